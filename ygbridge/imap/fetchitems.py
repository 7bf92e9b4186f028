"""What a FETCH asks for (RFC 3501 6.4.5, the fetch-att rule of section 9), parsed from the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ygbridge.errors import BadCommand
from ygbridge.imap.wire import Parser, number

#: Items that are only a name.
_SIMPLE = {
    b"ENVELOPE",
    b"FLAGS",
    b"INTERNALDATE",
    b"RFC822",
    b"RFC822.HEADER",
    b"RFC822.SIZE",
    b"RFC822.TEXT",
    b"BODYSTRUCTURE",
    b"UID",
}
_MACROS = {
    b"FAST": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"),
    b"ALL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"),
    b"FULL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"),
}
_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION = re.compile(rb"([1-9]\d{0,9}(?:\.[1-9]\d{0,9})*)?(?:(?(1)\.)([A-Za-z][A-Za-z.]*))?")
_PARTIAL = re.compile(rb"<(\d+)\.(\d+)>")
_KINDS = {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"}
#: Most body parts a section may nest (part numbers like 1.2.3).
_MAX_PART_DEPTH = 100


@dataclass(frozen=True)
class Section:
    """BODY[...]: part numbers (one-based), what of the part, and the header fields asked for."""

    part: tuple[int, ...] = ()
    kind: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME
    fields: tuple[bytes, ...] = ()  # upper case, for HEADER.FIELDS[.NOT]


@dataclass(frozen=True)
class FetchItem:
    """One FETCH data item: its name (BODY, FLAGS, RFC822.SIZE...), and for BODY[...] the rest."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, octets)


def _section(reader: Parser) -> Section:
    match = _SECTION.match(reader.data, reader.pos)
    assert match is not None  # every part of it is optional
    reader.pos = match.end()
    numbers = match[1].split(b".") if match[1] else []
    kind = (match[2] or b"").decode("ascii").upper()
    if kind not in _KINDS or (kind == "MIME" and not numbers) or len(numbers) > _MAX_PART_DEPTH:
        raise BadCommand("malformed BODY[] section")
    fields: tuple[bytes, ...] = ()
    if kind.startswith("HEADER.FIELDS"):
        reader.sp()
        fields = tuple(
            name.upper() for name in reader.parenthesised(reader.astring, "header names", empty=False)
        )
    reader.expect(b"]", "] after the section")
    return Section(tuple(number(n, "part number", nonzero=True) for n in numbers), kind, fields)


def _item(reader: Parser) -> list[FetchItem]:
    name = reader.data[reader.pos : reader.pos + 64]
    match = _NAME.match(name)
    if match is None:
        raise BadCommand("FETCH data item expected")
    word = match[0].upper()
    reader.pos += len(word)
    if word in _MACROS:
        return [FetchItem(item.decode("ascii")) for item in _MACROS[word]]
    if word in _SIMPLE or (word == b"BODY" and not reader.peek(b"[")):
        return [FetchItem(word.decode("ascii"))]
    if word not in (b"BODY", b"BODY.PEEK") or not reader.skip(b"["):
        raise BadCommand(f"unknown FETCH data item {word.decode('ascii')}")
    section = _section(reader)
    partial = None
    found = _PARTIAL.match(reader.data, reader.pos)
    if found is not None:
        reader.pos = found.end()
        partial = (number(found[1], "partial origin"), number(found[2], "partial length", nonzero=True))
    return [FetchItem("BODY", section, word == b"BODY.PEEK", partial)]


def parse_fetch_items(reader: Parser) -> list[FetchItem]:
    """FETCH's data items: a macro, one item, or a parenthesised list of them."""
    if reader.peek(b"("):
        groups = reader.parenthesised(lambda: _item(reader), "FETCH data items", empty=False)
        return [item for group in groups for item in group]
    return _item(reader)
