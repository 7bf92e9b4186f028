"""Logs are JSON lines for the journal and files, readable lines on a terminal."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from ygbridge import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    logs.configure("info", stream)
    structlog.get_logger("t").info("node.ready", port=25)
    event = json.loads(stream.getvalue())
    assert (event["event"], event["port"], event["level"]) == ("node.ready", 25, "info")


def test_readable_lines_on_a_terminal() -> None:
    stream = Terminal()
    logs.configure("info", stream)
    structlog.get_logger("t").warning("node.ready", port=25)
    line = stream.getvalue().strip()
    assert "node.ready" in line and "port=25" in line and "warning" in line
    with pytest.raises(ValueError):
        json.loads(line)
