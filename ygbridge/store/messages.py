"""The messages in mailboxes: blocking functions for the DB thread.

Every function returns plain values (dataclasses, lists, arrays), never a lazy query; rows are
streamed from the database, so a large mailbox is never held in memory whole.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import peewee

from ygbridge.errors import NoSuchMailbox
from ygbridge.store import sql
from ygbridge.store.flags import flag_bit, normalize_flags, pack_flags, unpack_flags
from ygbridge.store.indexing import index_message
from ygbridge.store.mailboxes import canonical_name, find_mailbox
from ygbridge.store.models import HeaderField, Mailbox, Message, database, tuples
from ygbridge.store.uidflags import Packed, UidFlags

T = TypeVar("T")

_CHUNK = 500  # stays below SQLite's bound-parameter limit
_SEEN = flag_bit("\\Seen")
_DELETED = flag_bit("\\Deleted")
#: What a copy of a message takes over from the original.
_COPIED = [name for name in Message._meta.fields if name not in ("id", "mailbox", "uid")]
_COUNT = 'UPDATE "mailbox" SET "total" = "total" + ?, "unseen" = "unseen" + ? WHERE "id" = ?'
_COUNT_UIDNEXT = (
    'UPDATE "mailbox" SET "total" = "total" + ?, "unseen" = "unseen" + ?, "uidnext" = ? WHERE "id" = ?'
)
_DELIVERY_BOX = (
    'SELECT "b"."id", "b"."uidvalidity", "b"."uidnext" FROM "mailbox" AS "b" '
    'JOIN "user" AS "u" ON "b"."user_id" = "u"."id" WHERE "u"."name" = ? AND "b"."name" = ?'
)
_DUPLICATE = 'SELECT 1 FROM "message" WHERE "mailbox_id" = ? AND "sender_node" = ? AND "message_id" = ?'
_INSERT_MESSAGE = (
    'INSERT INTO "message" ("mailbox_id", "uid", "system_flags", "keywords", "internaldate", "size", '
    '"body", "header_size", "sent_date", "message_id", "sender_node") '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class StoredMessage:
    """One message; ``body`` is None when it was not asked for."""

    uid: int
    flags: frozenset[str]
    internaldate: float
    size: int
    body: bytes | None


@dataclass(frozen=True)
class Added:
    """Where a new message went."""

    mailbox_id: int
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Transferred:
    """Messages copied or moved: ``source[n]`` became ``target[n]`` in mailbox ``mailbox_id``,
    with the flags ``flags[n]``."""

    mailbox_id: int
    uidvalidity: int
    source: array[int]
    target: array[int]
    flags: list[Packed]


@dataclass(frozen=True)
class Contents:
    """What selecting a mailbox needs: every message's UID and flags (None when not asked for),
    the next UID, keywords in use, the first unseen, and the \\Recent messages."""

    messages: UidFlags | None
    uidnext: int
    uidvalidity: int
    keywords: frozenset[str]
    first_unseen: int | None  # the lowest UID without \Seen
    recent: int  # how many messages are \Recent
    claimed: tuple[int, int] | None  # the UIDs (low, high) this session claimed as \Recent


@dataclass(frozen=True)
class Counts:
    """What STATUS reports."""

    messages: int
    unseen: int
    recent: int
    uidnext: int
    uidvalidity: int


class FlagUpdate(NamedTuple):
    """A message's flags after STORE, and whether STORE changed them."""

    uid: int
    flags: frozenset[str]
    changed: bool


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _uid_in(uids: Sequence[int]) -> Any:
    """``uid IN (...)`` with the numbers written into the SQL: a bound parameter each costs
    Peewee more time than the query itself (they are ints, so nothing can be injected)."""
    numbers = ",".join(str(int(uid)) for uid in uids)
    return Message.uid.in_(peewee.SQL(f"({numbers})"))


def rows(query: peewee.Query) -> Iterator[tuple[Any, ...]]:
    """The rows of a query as the database driver gives them, one at a time (none of Peewee's
    per-row work: on a 50,000-message mailbox that is most of the time)."""
    return iter(database.execute(query))


def _mailbox(mailbox_id: int) -> Mailbox:
    box = Mailbox.get_or_none(Mailbox.id == mailbox_id)
    if box is None:
        raise NoSuchMailbox("the mailbox has been deleted")
    return box


def _count(mailbox_id: int, messages: int, unseen: int, uidnext: int | None = None) -> None:
    """Keep a mailbox's counters: ``messages`` and ``unseen`` more (or fewer), and record the UIDs
    given out so far (UIDs are never reused, RFC 3501 2.3.1.1). Inside the change's transaction."""
    if uidnext is None:
        sql.execute(_COUNT, (messages, unseen, mailbox_id))
    else:
        sql.execute(_COUNT_UIDNEXT, (messages, unseen, uidnext, mailbox_id))


def _unseen(system_flags: int) -> int:
    return 0 if system_flags & _SEEN else 1


def insert_fields(message_id: int, fields: Sequence[tuple[str, str]]) -> None:
    """Index a message's header fields (store.indexing) for SEARCH."""
    for chunk in _chunks(fields):
        rows = ", ".join(["(?, ?, ?)"] * len(chunk))
        values = [value for name, text in chunk for value in (message_id, name, text)]
        sql.execute(f'INSERT INTO "header_field" ("message_id", "name", "value") VALUES {rows}', values)


def _delivery_box(user: str, mailbox: str) -> tuple[int, int, int]:
    """(id, UIDVALIDITY, UIDNEXT) of ``user``'s mailbox ``mailbox``; NoSuchMailbox, or UserError
    if there is no such user, as :func:`find_mailbox`."""
    row = sql.execute(_DELIVERY_BOX, (user, canonical_name(mailbox))).fetchone()
    if row is None:
        find_mailbox(user, mailbox)  # raises why
        raise NoSuchMailbox(f"there is no mailbox {mailbox!r}")
    return int(row[0]), int(row[1]), int(row[2])


def add_message(
    user: str,
    mailbox: str,
    body: bytes,
    *,
    flags: Iterable[str],
    internaldate: float,
    message_id: str | None,
    sender_node: str | None,
) -> Added | None:
    """Store a message; None if one from (sender_node, message_id) is already in the mailbox."""
    index = index_message(body)
    system_flags, keywords = pack_flags(normalize_flags(flags))
    with database.atomic():
        box_id, uidvalidity, uid = _delivery_box(user, mailbox)
        if message_id is not None and sender_node is not None:
            if sql.exists(_DUPLICATE, (box_id, sender_node, message_id)):
                return None
        _count(box_id, 1, _unseen(system_flags), uid + 1)
        row_id = sql.insert(
            _INSERT_MESSAGE,
            (
                box_id,
                uid,
                system_flags,
                keywords,
                internaldate,
                len(body),
                Message.body.db_value(body),
                index.header_size,
                Message.sent_date.db_value(index.sent_date),
                message_id,
                sender_node,
            ),
        )
        insert_fields(row_id, index.fields)
    return Added(box_id, uidvalidity, uid)


def _scalar(statement: str, *params: Any) -> Any:
    return sql.execute(statement, params).fetchone()[0]


def _recent(box: Mailbox) -> int:
    """How many messages of a mailbox are \\Recent and not yet claimed by a session."""
    if box.recent_from >= box.uidnext:
        return 0
    return int(
        _scalar(
            'SELECT COUNT(*) FROM "message" WHERE "mailbox_id" = ? AND "uid" >= ?', box.id, box.recent_from
        )
    )


def mailbox_contents(mailbox_id: int, *, claim: bool = False, listed: bool = True) -> Contents:
    """What SELECT (``claim``: the \\Recent messages become this session's) or EXAMINE shows;
    the UIDs and flags of its messages too if ``listed`` (one covering-index scan). The rest is
    read from the counters and partial indexes (no scan)."""
    with database.atomic():
        box = _mailbox(mailbox_id)
        recent = _recent(box)
        claimed = None
        if claim and recent:
            claimed = (box.recent_from, box.uidnext - 1)
            Mailbox.update(recent_from=box.uidnext).where(Mailbox.id == mailbox_id).execute()
        found = None
        if listed:
            in_box = Message.select(Message.uid, Message.system_flags, Message.keywords).where(
                Message.mailbox == mailbox_id
            )
            found = UidFlags(rows(in_box.order_by(Message.uid)))
        used = database.execute_sql(
            f'SELECT DISTINCT "keywords" FROM "message" WHERE "mailbox_id" = {database.param} '
            "AND \"keywords\" <> ''",
            (mailbox_id,),
        )
        first_unseen = None
        if box.unseen:
            first_unseen = _scalar(
                'SELECT MIN("uid") FROM "message" WHERE "mailbox_id" = ? AND ("system_flags" & 8) = 0',
                mailbox_id,
            )
    return Contents(
        messages=found,
        uidnext=box.uidnext,
        uidvalidity=box.uidvalidity,
        keywords=frozenset(word for (text,) in used for word in text.split()),
        first_unseen=first_unseen,
        recent=recent,
        claimed=claimed,
    )


def claim_recent(mailbox_id: int, uidnext: int) -> None:
    """Messages below ``uidnext`` are no longer \\Recent to a session yet to select the mailbox
    (a session that had it selected when they arrived claimed them)."""
    Mailbox.update(recent_from=uidnext).where(
        Mailbox.id == mailbox_id, Mailbox.recent_from < uidnext
    ).execute()


def mailbox_counts(mailbox_id: int) -> Counts:
    """What STATUS reports, from the mailbox's counters."""
    box = _mailbox(mailbox_id)
    return Counts(
        messages=box.total,
        unseen=box.unseen,
        recent=_recent(box),
        uidnext=box.uidnext,
        uidvalidity=box.uidvalidity,
    )


def load_messages(
    mailbox_id: int,
    uids: Sequence[int],
    *,
    bodies: bool,
    max_bytes: int | None = None,
    headers_only: bool = False,
) -> list[StoredMessage]:
    """The messages with these UIDs that still exist, in UID order.

    With ``max_bytes``, loading stops after the message that brings the bodies past it: the
    caller asks again from the UID after the last one returned. With ``headers_only``, ``body``
    is only the header section (up to the blank line that ends it).
    """
    fields = [Message.uid, Message.system_flags, Message.keywords, Message.internaldate, Message.size]
    if bodies:
        fields.append(
            peewee.fn.substr(Message.body, 1, Message.header_size) if headers_only else Message.body
        )
    found = []
    total = 0
    for chunk in _chunks(sorted(uids)):
        query = Message.select(*fields).where(Message.mailbox == mailbox_id, _uid_in(chunk))
        for row in rows(query.order_by(Message.uid)):
            body = bytes(row[5]) if bodies else None
            found.append(StoredMessage(row[0], unpack_flags(row[1], row[2]), row[3], row[4], body))
            total += row[4] if bodies else 0
            if max_bytes is not None and total >= max_bytes:
                return found
    return found


def load_summaries(
    mailbox_id: int, low: int, high: int, *, details: bool, headers: bool = False
) -> list[tuple[Any, ...]]:
    """(uid, system flag bits, keywords[, internaldate, size if ``details``[, header section if
    ``headers``]]) of the messages with UIDs ``low``..``high``, ascending: FETCH without whole
    messages, in one indexed read."""
    columns = '"uid", "system_flags", "keywords"'
    if details or headers:
        columns += ', "internaldate", "size"'
    if headers:
        columns += ', substr("body", 1, "header_size")'
    p = database.param
    sql = f'SELECT {columns} FROM "message" WHERE "mailbox_id" = {p} AND "uid" BETWEEN {p} AND {p}'
    rows: list[tuple[Any, ...]] = database.execute_sql(
        sql + ' ORDER BY "uid"', (mailbox_id, low, high)
    ).fetchall()
    return rows


def store_flags(mailbox_id: int, uids: Sequence[int], flags: Iterable[str], mode: int) -> list[FlagUpdate]:
    """Add (mode 1), remove (-1) or replace (0) flags of these messages; their new flags, by UID."""
    given = normalize_flags(flags)
    updates = []
    with database.atomic():
        for chunk in _chunks(sorted(uids)):
            query = Message.select(Message.id, Message.uid, Message.system_flags, Message.keywords).where(
                Message.mailbox == mailbox_id, _uid_in(chunk)
            )
            changed: dict[frozenset[str], list[int]] = {}  # new flags -> the rows that get them
            unseen = 0
            for row_id, uid, bits, keywords in tuples(query.order_by(Message.uid)):
                old = unpack_flags(bits, keywords)
                new = old | given if mode > 0 else old - given if mode < 0 else given
                if new != old:
                    changed.setdefault(new, []).append(row_id)
                    unseen += ("\\Seen" in old) - ("\\Seen" in new)
                updates.append(FlagUpdate(uid, new, new != old))
            if unseen:
                _count(mailbox_id, 0, unseen)
            for new, row_ids in changed.items():
                system_flags, words = pack_flags(new)
                Message.update(system_flags=system_flags, keywords=words).where(
                    Message.id.in_(row_ids)
                ).execute()
    return updates


def expunge(mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
    """Remove the messages flagged ``\\Deleted`` (only among ``uids`` if given); their UIDs, ascending."""
    deleted = (Message.mailbox == mailbox_id) & (Message.system_flags.bin_and(_DELETED) != 0)
    found = Message.select(Message.uid, Message.system_flags).where(deleted)
    with database.atomic():
        doomed: list[tuple[int, int]]
        if uids is None:
            doomed = list(tuples(found))
        else:
            doomed = [row for chunk in _chunks(sorted(uids)) for row in tuples(found.where(_uid_in(chunk)))]
        doomed.sort()
        for chunk in _chunks([uid for uid, _ in doomed]):
            Message.delete().where(Message.mailbox == mailbox_id, _uid_in(chunk)).execute()
        if doomed:
            _count(mailbox_id, -len(doomed), -sum(_unseen(bits) for _, bits in doomed))
    return [uid for uid, _ in doomed]


def _copy_fields(row: Message) -> dict[str, object]:
    return {name: getattr(row, name) for name in _COPIED}


def copy_messages(mailbox_id: int, uids: Sequence[int], user: str, target: str) -> Transferred:
    """Copy messages, flags and index entries into ``user``'s mailbox ``target``."""
    source, copies = array("Q"), array("Q")
    flags: list[Packed] = []
    unseen = 0
    with database.atomic():
        box = find_mailbox(user, target)
        for chunk in _chunks(sorted(uids)):
            query = Message.select().where(Message.mailbox == mailbox_id, _uid_in(chunk))
            for row in query.order_by(Message.uid).iterator():  # one body in memory at a time
                copy = Message.create(mailbox=box.id, uid=box.uidnext + len(copies), **_copy_fields(row))
                fields = HeaderField.select(peewee.Value(copy.id), HeaderField.name, HeaderField.value)
                HeaderField.insert_from(
                    fields.where(HeaderField.message == row.id),
                    [HeaderField.message, HeaderField.name, HeaderField.value],
                ).execute()
                source.append(row.uid)
                copies.append(copy.uid)
                flags.append((row.system_flags, row.keywords))
                unseen += _unseen(row.system_flags)
        _count(box.id, len(copies), unseen, box.uidnext + len(copies))
    return Transferred(box.id, box.uidvalidity, source, copies, flags)


def move_messages(mailbox_id: int, uids: Sequence[int], user: str, target: str) -> Transferred:
    """Move messages into ``user``'s mailbox ``target`` (RFC 6851): new UIDs, nothing copied."""
    source, moved = array("Q"), array("Q")
    flags: list[Packed] = []
    unseen = 0
    with database.atomic():
        box = find_mailbox(user, target)
        for chunk in _chunks(sorted(uids)):
            query = Message.select(Message.id, Message.uid, Message.system_flags, Message.keywords).where(
                Message.mailbox == mailbox_id, _uid_in(chunk)
            )
            for row_id, uid, bits, keywords in list(tuples(query.order_by(Message.uid))):
                new_uid = box.uidnext + len(moved)
                Message.update(mailbox=box.id, uid=new_uid).where(Message.id == row_id).execute()
                source.append(uid)
                moved.append(new_uid)
                flags.append((bits, keywords))
                unseen += _unseen(bits)
        _count(mailbox_id, -len(moved), -unseen)
        _count(box.id, len(moved), unseen, box.uidnext + len(moved))
    return Transferred(box.id, box.uidvalidity, source, moved, flags)
