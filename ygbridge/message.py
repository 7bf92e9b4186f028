"""Reading raw message bytes (RFC 5322 header fields) without re-encoding them."""

from __future__ import annotations

import re

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


def header_block(body: bytes) -> bytes:
    """The raw header section of a message (without the blank line that ends it)."""
    match = _HEADER_END.search(body)
    return body[: match.start()] if match else body


def header_section(raw: bytes) -> bytes:
    """The header section of a message or MIME part, with the blank line that ends it (the
    body is not copied: it may be 32 MiB)."""
    blank = re.match(rb"\r?\n", raw)
    end = blank or _HEADER_END.search(raw)
    return raw if end is None else raw[: end.end()]


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section including the blank line that ends it, body) of a message or MIME part."""
    header = header_section(raw)
    return header, raw[len(header) :]


def header_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """(lowercase name, raw field with its continuation lines and line ends), in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower(), line))
    return fields


def field_value(field: bytes) -> bytes:
    """The unfolded value of a raw header field (what follows the colon, line ends removed)."""
    return _LINE_END.sub(b"", field.split(b":", 1)[-1]).strip()


def header_value(body: bytes, name: str) -> str | None:
    """The unfolded value of the first header ``name`` (case-insensitive), or None."""
    wanted = name.lower().encode("ascii")
    for field_name, field in header_fields(header_section(body)):
        if field_name == wanted:
            return field_value(field).decode("utf-8", "replace") or None
    return None


def has_field(body: bytes, name: str) -> bool:
    """Whether the message's header section has a field ``name`` (case-insensitive), even empty."""
    wanted = name.lower().encode("ascii")
    return any(field_name == wanted for field_name, _ in header_fields(header_section(body)))


def message_id(body: bytes) -> str | None:
    """The Message-ID of a message, used to recognise a retried delivery."""
    return header_value(body, "Message-ID")
