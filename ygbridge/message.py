"""Reading what delivery needs from raw message bytes, without re-encoding them."""

from __future__ import annotations

import re

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_block(body: bytes) -> bytes:
    """The raw header section of a message (without the blank line that ends it)."""
    match = _HEADER_END.search(body)
    return body[: match.start()] if match else body


def header_value(body: bytes, name: str) -> str | None:
    """The unfolded value of the first header ``name`` (case-insensitive), or None."""
    wanted = name.lower().encode("ascii") + b":"
    lines = header_block(body).splitlines()
    for index, line in enumerate(lines):
        if line.lower().startswith(wanted):
            value = line[len(wanted) :]
            for more in lines[index + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += more
            return value.decode("utf-8", "replace").strip() or None
    return None


def message_id(body: bytes) -> str | None:
    """The Message-ID of a message, used to recognise a retried delivery."""
    return header_value(body, "Message-ID")
