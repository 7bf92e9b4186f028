"""FETCH responses (RFC 3501 7.4.2) written from the raw message bytes.

``query`` is what Twisted's FETCH parser gives: parts with a ``type`` (``body``, ``flags``...)
and, for BODY[...], the section, PEEK and partial range. Twisted's own FETCH re-cases and
re-folds headers; here every section is cut from the stored bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.mail.imap4 import collapseNestedLists, getEnvelope

from ygbridge.imap.dates import format_date_time
from ygbridge.imap.message import ImapMessage, body_structure

#: FETCH items that need the message bytes.
_NEEDS_BODY = {"body", "bodystructure", "envelope", "rfc822", "rfc822header", "rfc822text"}


def flags_list(flags: Iterable[str]) -> bytes:
    """A parenthesised flag list, sorted."""
    return b"(" + " ".join(sorted(flags)).encode("utf-8") + b")"


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n%b" % (len(data), data)


def _wire(value: Any) -> Any:
    """A structure for collapseNestedLists with str leaves turned back into their raw bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple)):
        return [_wire(item) for item in value]
    return value


def _has_section(part: Any) -> bool:
    return bool(part.empty or part.header or part.text or part.mime)


def needs_body(query: Sequence[Any]) -> bool:
    """Whether answering needs the message bytes (not just flags, dates and sizes)."""
    return any(part.type in _NEEDS_BODY for part in query)


def sets_seen(query: Sequence[Any]) -> bool:
    """Whether fetching these items sets ``\\Seen`` (BODY[...] without PEEK, RFC822, RFC822.TEXT)."""
    return any(
        _has_section(part) and not part.peek if part.type == "body" else part.type in ("rfc822", "rfc822text")
        for part in query
    )


def fetch_response(seq: int, message: ImapMessage, query: Sequence[Any], uid: bool, seen_set: bool) -> bytes:
    """The untagged FETCH response of one message; UID added for UID FETCH, FLAGS if just set."""
    types = {part.type for part in query}
    items = [_item(part, message) for part in query]
    if uid and "uid" not in types:
        items.append(b"UID %d" % message.stored.uid)
    if seen_set and "flags" not in types:
        items.append(b"FLAGS " + flags_list(message.stored.flags))
    return b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))


def _item(part: Any, message: ImapMessage) -> bytes:
    stored = message.stored
    match part.type:
        case "flags":
            return b"FLAGS " + flags_list(stored.flags)
        case "uid":
            return b"UID %d" % stored.uid
        case "internaldate":
            return b"INTERNALDATE " + format_date_time(stored.internaldate)
        case "rfc822size":
            return b"RFC822.SIZE %d" % stored.size
        case "rfc822":
            return b"RFC822 " + _literal(message.entity.raw)
        case "rfc822header":
            return b"RFC822.HEADER " + _literal(message.entity.header)
        case "rfc822text":
            return b"RFC822.TEXT " + _literal(message.entity.body)
        case "envelope":
            return b"ENVELOPE " + collapseNestedLists([_wire(getEnvelope(message))])
        case "bodystructure":
            return b"BODYSTRUCTURE " + _structure(message, extended=True)
        case "body" if not _has_section(part):
            return b"BODY " + _structure(message, extended=False)
    return _body_section(part, message)


def _body_section(part: Any, message: ImapMessage) -> bytes:
    fields: list[bytes] = []
    if part.mime:
        kind = "MIME"
    elif part.text:
        kind = "TEXT"
    elif part.header:
        fields = list(part.header.fields or ())
        kind = "HEADER" if not fields else "HEADER.FIELDS.NOT" if part.header.negate else "HEADER.FIELDS"
    else:
        kind = ""
    data = message.entity.section(part.part, kind, fields)
    section = ".".join([*(str(n + 1) for n in part.part), *([kind] if kind else [])]).encode("ascii")
    if fields:
        section += b" (" + b" ".join(fields) + b")"
    label = b"BODY[" + section + b"]"
    if part.partialBegin is not None:
        label += b"<%d>" % part.partialBegin
        data = data and data[part.partialBegin : part.partialBegin + part.partialLength]
    return label + b" " + (b"NIL" if data is None else _literal(data))


def _structure(message: ImapMessage, extended: bool) -> bytes:
    return collapseNestedLists([_wire(body_structure(message.entity, extended))])
