"""FETCH responses (RFC 3501 7.4.2) written from the raw message bytes.

``query`` is what imap.fetchitems parsed; every section is cut from the stored bytes, never
re-cased or re-folded. ENVELOPE and the nested lists use twisted.mail's public helpers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.mail import imap4
from twisted.mail.imap4 import getEnvelope

from ygbridge.imap.dates import format_date_time
from ygbridge.imap.fetchitems import FetchItem, Section
from ygbridge.imap.message import ImapMessage, body_structure, select_fields
from ygbridge.store.flags import SYSTEM_FLAGS, unpack_flags
from ygbridge.store.uidflags import Columns

#: FETCH items that need the message bytes.
_NEEDS_BODY = {"BODY", "BODYSTRUCTURE", "ENVELOPE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
#: Items besides BODY[...] whose fetching sets \Seen.
_SETS_SEEN = {"RFC822", "RFC822.TEXT"}
#: Twisted's (unannotated) serialiser of a nested list into an IMAP parenthesised list.
collapseNestedLists: Callable[[list[Any]], bytes] = imap4.collapseNestedLists


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


#: FETCH items answered from a message's row alone (store.messages.load_summaries).
SUMMARY_ITEMS = frozenset({"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"})


def _is_header_section(item: FetchItem) -> bool:
    """BODY.PEEK[HEADER], BODY.PEEK[HEADER.FIELDS (...)] or its .NOT, of the message, whole."""
    section = item.section
    return (
        item.name == "BODY"
        and item.peek
        and item.partial is None
        and section is not None
        and not section.part
        and section.kind.startswith("HEADER")
    )


def summary_query(query: Sequence[FetchItem]) -> bool:
    """Whether a FETCH can be answered from rows (summary_responses): SUMMARY_ITEMS and header
    sections only (what mail clients ask when they sync: flags, or Delta Chat's header fetch)."""
    return all(item.name in SUMMARY_ITEMS or _is_header_section(item) for item in query)


def flags_only(query: Sequence[FetchItem]) -> bool:
    """Whether a FETCH asks for FLAGS and UID alone (listed_responses answers it)."""
    return all(item.name in ("UID", "FLAGS") for item in query)


def wants_headers(query: Sequence[FetchItem]) -> bool:
    """Whether a summary query needs the header sections of the messages."""
    return any(item.name == "BODY" for item in query)


class _FlagLists(dict[tuple[int, str], bytes]):
    """Flag lists on the wire by (system flag bits, keywords), each made once."""

    def __missing__(self, key: tuple[int, str]) -> bytes:
        value = self[key] = flags_list(unpack_flags(*key))
        return value


def summary_responses(
    first_seq: int,
    uids: Sequence[int],
    found: Sequence[tuple[Any, ...]],
    query: Sequence[FetchItem],
    uid: bool,
    recent: Sequence[tuple[int, int]],
) -> bytes:
    """The FETCH responses of consecutive messages (``uids``, numbered from ``first_seq``) for a
    summary_query, from their rows ``found`` (store.messages.load_summaries, or the same from
    store.uidflags; rows of other UIDs are skipped); ``\\Recent`` is among the flags of the UIDs
    in the ascending inclusive ranges ``recent``. Built a column at a time, with no call per
    message and item."""
    items = list(dict.fromkeys(query))
    if uid and not any(item.name == "UID" for item in items):
        items.append(FetchItem("UID"))
    seqs: Sequence[int]
    if len(found) == len(uids):  # each UID the session numbers is still there (the usual case)
        seqs = range(first_seq, first_seq + len(found))
    else:  # some were expunged by others and the session has not been told yet
        position = {message_uid: first_seq + at for at, message_uid in enumerate(uids)}
        found = [row for row in found if row[0] in position]
        seqs = [position[row[0]] for row in found]
    labels, columns = [], []
    for item in items:
        conversion = b"%b"
        if item.name == "UID":
            conversion, column = b"%d", [row[0] for row in found]
        elif item.name == "FLAGS":
            lists = _FlagLists()
            column = [lists[row[1], row[2]] for row in found]
            if recent:
                for at in _positions([row[0] for row in found], recent):
                    row = found[at]
                    column[at] = flags_list(unpack_flags(row[1], row[2]) | {"\\Recent"})
        elif item.name == "RFC822.SIZE":
            conversion, column = b"%d", [row[4] for row in found]
        elif item.name == "INTERNALDATE":
            column = [format_date_time(row[3]) for row in found]
        else:
            assert item.section is not None
            section = item.section
            if section.kind == "HEADER":
                column = [_literal(row[5]) for row in found]
            else:
                negate = section.kind == "HEADER.FIELDS.NOT"
                column = [_literal(select_fields(row[5], section.fields, negate)) for row in found]
            labels.append(_section_label(section) + b" %b")
            columns.append(column)
            continue
        labels.append(item.name.encode("ascii") + b" " + conversion)
        columns.append(column)
    template = b"* %d FETCH (" + b" ".join(labels) + b")\r\n"
    return b"".join([template % values for values in zip(seqs, *columns, strict=True)])


#: The flag list on the wire of each combination of system flag bits (store.flags), and with
#: ``\\Recent``.
_SYSTEM_LISTS = [flags_list(unpack_flags(bits, "")) for bits in range(1 << len(SYSTEM_FLAGS))]
_RECENT_LISTS = [flags_list(unpack_flags(bits, "") | {"\\Recent"}) for bits in range(1 << len(SYSTEM_FLAGS))]


def listed_responses(
    first_seq: int,
    uids: Sequence[int],
    found: Columns,
    query: Sequence[FetchItem],
    uid: bool,
    recent: Sequence[tuple[int, int]],
) -> bytes:
    """summary_responses for a query of FLAGS and UID alone (flags_only), from a mailbox's
    listing in memory (store.uidflags): what ``found`` has of ``uids``."""
    names = list(dict.fromkeys(item.name for item in query))
    if uid and "UID" not in names:
        names.append("UID")
    seqs: Sequence[int]
    if len(found.uids) == len(uids):
        seqs = range(first_seq, first_seq + len(uids))
    else:  # some were expunged by others and the session has not been told yet
        position = {message_uid: first_seq + at for at, message_uid in enumerate(uids)}
        seqs = [position[message_uid] for message_uid in found.uids]
    flags = [_SYSTEM_LISTS[bits] for bits in found.bits]
    for at, words in found.keywords.items():
        flags[at] = flags_list(unpack_flags(found.bits[at], words))
    for at in _positions(found.uids, recent):
        keywords = found.keywords.get(at)
        if keywords is None:
            flags[at] = _RECENT_LISTS[found.bits[at]]
        else:
            flags[at] = flags_list(unpack_flags(found.bits[at], keywords) | {"\\Recent"})
    labels = [b"UID %d" if name == "UID" else b"FLAGS %b" for name in names]
    columns = [found.uids if name == "UID" else flags for name in names]
    template = b"* %d FETCH (" + b" ".join(labels) + b")\r\n"
    return b"".join([template % values for values in zip(seqs, *columns, strict=True)])


def _positions(uids: Sequence[int], ranges: Sequence[tuple[int, int]]) -> Iterable[int]:
    """The positions in ``uids`` (ascending) of those in these ascending inclusive ranges."""
    for low, high in ranges:
        yield from range(bisect_left(uids, low), bisect_right(uids, high))


def needs_body(query: Sequence[FetchItem]) -> bool:
    """Whether answering needs the message bytes (not just flags, dates and sizes)."""
    return any(item.name in _NEEDS_BODY for item in query)


def needs_header_only(query: Sequence[FetchItem]) -> bool:
    """Whether the message bytes asked for all lie in the header section (BODY[HEADER...],
    RFC822.HEADER), so that only that section need be read from the store."""
    for item in query:
        if item.name == "BODY" and item.section is not None:
            if item.section.part or not item.section.kind.startswith("HEADER"):
                return False
        elif item.name in _NEEDS_BODY and item.name != "RFC822.HEADER":
            return False
    return True


def sets_seen(query: Sequence[FetchItem]) -> bool:
    """Whether fetching these items sets ``\\Seen`` (BODY[...] without PEEK, RFC822, RFC822.TEXT)."""
    return any(
        item.section is not None and not item.peek
        if item.name == "BODY"
        else item.name in ("RFC822", "RFC822.TEXT")
        for item in query
    )


def fetch_response(
    seq: int, message: ImapMessage, query: Sequence[FetchItem], uid: bool, seen_set: bool
) -> bytes:
    """The untagged FETCH response of one message; UID added for UID FETCH, FLAGS if just set."""
    names = {item.name for item in query}
    items = [_item(item, message) for item in query]
    if uid and "UID" not in names:
        items.append(b"UID %d" % message.stored.uid)
    if seen_set and "FLAGS" not in names:
        items.append(b"FLAGS " + flags_list(message.stored.flags))
    return b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))


def _item(item: FetchItem, message: ImapMessage) -> bytes:
    stored = message.stored
    match item.name:
        case "FLAGS":
            return b"FLAGS " + flags_list(stored.flags)
        case "UID":
            return b"UID %d" % stored.uid
        case "INTERNALDATE":
            return b"INTERNALDATE " + format_date_time(stored.internaldate)
        case "RFC822.SIZE":
            return b"RFC822.SIZE %d" % stored.size
        case "RFC822":
            return b"RFC822 " + _literal(message.entity.raw)
        case "RFC822.HEADER":
            return b"RFC822.HEADER " + _literal(message.entity.header)
        case "RFC822.TEXT":
            return b"RFC822.TEXT " + _literal(message.entity.body)
        case "ENVELOPE":
            return b"ENVELOPE " + collapseNestedLists([_wire(getEnvelope(message))])
        case "BODYSTRUCTURE":
            return b"BODYSTRUCTURE " + _structure(message, extended=True)
    if item.section is None:
        return b"BODY " + _structure(message, extended=False)
    return _body_section(item.section, item.partial, message)


def _section_label(section: Section) -> bytes:
    label = ".".join([*(str(n) for n in section.part), *([section.kind] if section.kind else [])]).encode(
        "ascii"
    )
    if section.fields:
        label += b" (" + b" ".join(section.fields) + b")"
    return b"BODY[" + label + b"]"


def _body_section(section: Section, partial: tuple[int, int] | None, message: ImapMessage) -> bytes:
    data = message.entity.section([n - 1 for n in section.part], section.kind, section.fields)
    label = _section_label(section)
    if partial is not None:
        origin, octets = partial
        label += b"<%d>" % origin
        data = data and data[origin : origin + octets]
    return label + b" " + (b"NIL" if data is None else _literal(data))


def _structure(message: ImapMessage, extended: bool) -> bytes:
    return collapseNestedLists([_wire(body_structure(message.entity, extended))])
