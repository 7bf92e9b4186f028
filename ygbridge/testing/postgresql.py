"""A throwaway PostgreSQL server for the store tests: Debian's server binaries, a data directory
and a unix socket in a new temporary directory, run as an unprivileged user (``nobody`` when the
tests run as root, since PostgreSQL refuses root), trust authentication, no TCP port."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT = 60
DATABASE = "ygbridge_test"
ROLE = "ygbridge"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@contextmanager
def running_server() -> Iterator[str]:
    """Start a server; yield a ``postgresql://`` URL of an empty database on it; stop and remove it."""
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql: apt install postgresql")
    top = Path(tempfile.mkdtemp(prefix="ygbridge-pg-"))
    data = top / "data"
    owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    os.chown(top, owner.pw_uid, owner.pw_gid)
    top.chmod(0o700)

    def run(*argv: str) -> None:
        prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
        command = (prefix if os.geteuid() == 0 else []) + [str(binaries / argv[0]), *argv[1:]]
        subprocess.run(command, check=True, capture_output=True, timeout=START_TIMEOUT, cwd=top)

    try:
        run("initdb", "-D", str(data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        # A unix socket only; no durability needed for a test database.
        options = (
            f"-k {top} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        run(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(top / "log"),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-o",
            options,
            "start",
        )
        try:
            run("createdb", "-h", str(top), "-U", ROLE, DATABASE)
            yield f"postgresql://{ROLE}@/{DATABASE}?host={top}"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(top, ignore_errors=True)
