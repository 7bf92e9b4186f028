"""Run inside a node: commands that share the SQLite database wait for each other, not fail with
"database is locked" (as ``init`` did when ``status`` ran beside it).

    commands_wait.py 'ygbridge status' 'ygbridge init' ...

This process opens the database as every command does (``connect``, configuration from
``$YGBRIDGE_CONFIG`` or the default) and begins a write transaction, as ``init`` does while it
migrates; a second connection must then find the write lock taken. While it holds the lock, the
COMMANDs start together; each must be seen waiting for the lock (sleeping in SQLite's busy handler:
nothing else a command does before it has the database sleeps) and none may finish. Then the
transaction commits, and each COMMAND must exit with status 0.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
import time

from ygbridge.config import DEFAULT_CONFIG, load_config, sqlite_path
from ygbridge.store.db import BUSY_TIMEOUT, connect


def waiting(pid: int) -> bool:
    """Whether the process sleeps in the kernel's nanosleep (where SQLite's busy handler waits)."""
    with open(f"/proc/{pid}/wchan") as wchan:
        return "nanosleep" in wchan.read()


def start(command: str) -> subprocess.Popen[str]:
    """``command`` started, its output (with errors) to a pipe."""
    return subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main(commands: list[str]) -> None:
    """Hold the write lock, start ``commands`` together, see each wait, let go: each must succeed."""
    config = load_config(os.environ.get("YGBRIDGE_CONFIG") or DEFAULT_CONFIG)
    path = sqlite_path(config.database, config.base_dir)
    assert path is not None, f"not a SQLite database: {config.database}"
    db = connect(config.database, config.base_dir)
    with db.atomic():
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            raise AssertionError("a write transaction of ygbridge's does not hold the write lock")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc), exc
        finally:
            probe.close()
        started = time.monotonic()
        runs = {command: start(command) for command in commands}
        seen: set[str] = set()
        while len(seen) < len(runs):
            for command, run in runs.items():
                if run.poll() is not None:
                    output = run.communicate()[0].strip()
                    sys.exit(f"{command} ended (status {run.returncode}) while the lock was held: {output}")
                if waiting(run.pid):
                    seen.add(command)
            if time.monotonic() - started > BUSY_TIMEOUT / 2:
                sys.exit(
                    f"not seen waiting for the lock after {BUSY_TIMEOUT / 2:.0f}s: {sorted(set(runs) - seen)}"
                )
            time.sleep(0.005)
        held = time.monotonic() - started
    for command, run in runs.items():
        output = run.communicate(timeout=BUSY_TIMEOUT)[0].strip()
        if run.returncode != 0:
            sys.exit(f"{command} failed (status {run.returncode}) after waiting: {output}")
        first = output.splitlines()[0] if output else ""
        print(f"{command}: waited for the lock ({held:.1f}s held), then status 0: {first}")


if __name__ == "__main__":
    main(sys.argv[1:])
