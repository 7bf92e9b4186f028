"""structlog configuration (JSON lines) and a twisted.logger observer that forwards into it.

Logs never carry message bodies or passwords.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

_LEVELS = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "critical",
}


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog events to ``stream`` (the real stdout by default): JSON lines, or readable
    lines when it is a terminal (a service started by hand; the journal and files get JSON).

    twistd replaces ``sys.stdout`` with a log file proxy, so the default is ``sys.__stdout__``.
    """
    out = stream or sys.__stdout__
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if out is not None and out.isatty()
        else structlog.processors.JSONRenderer(sort_keys=False, default=str)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


@implementer(ILogObserver)
class StructlogObserver:
    """Forwards Twisted's own log events to structlog (``twistd --logger ygbridge.logs.observer``)."""

    def __call__(self, event: dict[str, Any]) -> None:
        level = _LEVELS.get(event.get("log_level", LogLevel.info), "info")
        fields: dict[str, Any] = {"system": event.get("log_system") or event.get("log_namespace")}
        failure = event.get("log_failure")
        if failure is not None:
            fields["exception"] = failure.getTraceback()
        text = formatEvent(event)
        getattr(structlog.get_logger("twisted"), level)(text, **fields)


def observer() -> StructlogObserver:
    """Factory for twistd's ``--logger`` option."""
    return StructlogObserver()
