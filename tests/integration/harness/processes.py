"""Commands and daemons on the host: find the product's console scripts, run a command with a
bounded wait, stop a process politely then firmly, and make children die with the test runner."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import HarnessError

STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0
LOG_TAIL = 30_000

libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def tail(text: str, limit: int = LOG_TAIL) -> str:
    """The last ``limit`` characters of ``text`` (a long log), saying how much was cut."""
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def find_command(name: str) -> str:
    """A console script of the Python running the tests (its bin directory first), else PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise HarnessError(
            f"{name!r} not found next to {sys.executable} or on PATH: install the product "
            "(pip install .) before running the integration tests"
        )
    return found


def die_with_parent() -> None:
    """Runs in each child before exec: SIGKILL it if the test runner dies without cleaning up."""
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_command(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end within ``timeout``; HarnessError if it does not, or (``check``) if it fails."""
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        raise HarnessError(
            f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, bounded wait, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    return proc.returncode
