"""What SEARCH needs from a message, computed once when it is stored.

Header values are decoded (RFC 2047 encoded-words, raw UTF-8) and case-folded, so a search
string in any case or encoding finds them; the Date field gives the day SENT* keys compare.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
from dataclasses import dataclass
from datetime import date

from ygbridge.message import field_value, header_fields, header_section

#: Longest header field name kept (longer ones cannot be searched for).
MAX_NAME = 255


@dataclass(frozen=True)
class MessageIndex:
    """The searchable parts of a message."""

    header_size: int
    sent_date: date | None
    fields: tuple[tuple[str, str], ...]  # (lowercase name, searchable value), in order


def searchable(text: str) -> str:
    """The form header values are stored in, and search strings compared in."""
    return text.casefold()


def decode_value(raw: bytes) -> str:
    """A header value as text: encoded-words decoded, 8-bit bytes read as UTF-8."""
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def sent_date(value: bytes) -> date | None:
    """The day of a Date field as written (its own time zone), or None if it is not a date."""
    parsed = email.utils.parsedate_tz(value.decode("ascii", "replace"))
    if parsed is None:
        return None
    try:
        return date(*parsed[:3])
    except ValueError:
        return None


def index_message(raw: bytes) -> MessageIndex:
    """The index entries of a raw message."""
    header = header_section(raw)
    fields = []
    day = None
    for name, field in header_fields(header):
        if b":" not in field or not name or len(name) > MAX_NAME:
            continue
        value = field_value(field)
        if name == b"date" and day is None:
            day = sent_date(value)
        fields.append((name.decode("ascii", "replace"), searchable(decode_value(value))))
    return MessageIndex(len(header), day, tuple(fields))
