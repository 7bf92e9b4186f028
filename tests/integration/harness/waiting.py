"""Bounded waits: poll a real condition until it holds, or check that it keeps holding."""

from __future__ import annotations

import imaplib
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import HarnessError, ProcessExited

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None | bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except ProcessExited:
            raise
        except (OSError, HarnessError, subprocess.SubprocessError, imaplib.IMAP4.error) as exc:
            value, last_error = None, exc
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = f"; last error: {last_error!r}" if last_error else ""
            if detail is not None:
                extra += f"\n{detail()}"
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def holds_for(condition: Callable[[], object], *, duration: float, what: str, interval: float = 0.5) -> None:
    """Poll ``condition`` for ``duration`` seconds (a window in which nothing may go wrong);
    HarnessError as soon as it is false."""
    deadline = time.monotonic() + duration
    while True:
        if not condition():
            raise HarnessError(f"no longer true: {what}")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(interval, left))
