"""Mailboxes and the messages in them: blocking functions for the DB thread.

Every function returns plain values (dataclasses, lists, dicts), never a lazy query.
Flags are stored space separated; system flags in their canonical spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ygbridge.errors import MailboxError, NoSuchMailbox, UserError
from ygbridge.store.models import Mailbox, Message, User, database

T = TypeVar("T")

#: The hierarchy delimiter of mailbox names.
DELIMITER = "/"
#: The flags a client can set besides its own keywords.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}
_CHUNK = 500  # stays below SQLite's bound-parameter limit


@dataclass(frozen=True)
class MailboxSnapshot:
    """A mailbox with the UID and flags of every message in it, in UID order."""

    id: int
    name: str
    uidvalidity: int
    uidnext: int
    subscribed: bool
    special_use: str | None
    messages: tuple[tuple[int, frozenset[str]], ...]


@dataclass(frozen=True)
class StoredMessage:
    """One message; ``body`` is None when it was not asked for."""

    uid: int
    flags: frozenset[str]
    internaldate: float
    size: int
    body: bytes | None


def canonical_name(name: str) -> str:
    """A mailbox name as stored: ``INBOX`` in any case is INBOX; a trailing delimiter goes."""
    name = name.rstrip(DELIMITER) or name
    head, sep, rest = name.partition(DELIMITER)
    return "INBOX" + sep + rest if head.upper() == "INBOX" else name


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Flags with system flags spelt canonically; other ``\\`` flags (like ``\\Recent``) dropped."""
    canonical = (_CANONICAL.get(flag.lower(), flag) for flag in flags)
    return frozenset(flag for flag in canonical if flag in SYSTEM_FLAGS or not flag.startswith("\\"))


def _parse_flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _format_flags(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _user(user: str) -> User:
    row = User.get_or_none(User.name == user)
    if row is None:
        raise UserError(f"no such user: {user}")
    return row


def _mailbox(user: str, name: str) -> Mailbox:
    row = (
        Mailbox.select()
        .join(User)
        .where(User.name == user, Mailbox.name == canonical_name(name))
        .get_or_none()
    )
    if row is None:
        _user(user)  # UserError if that is what is missing
        raise NoSuchMailbox(f"there is no mailbox {name!r}")
    return row


def _snapshot(box: Mailbox, messages: Sequence[tuple[int, str]]) -> MailboxSnapshot:
    return MailboxSnapshot(
        id=box.id,
        name=box.name,
        uidvalidity=box.uidvalidity,
        uidnext=box.uidnext,
        subscribed=box.subscribed,
        special_use=box.special_use,
        messages=tuple((uid, _parse_flags(flags)) for uid, flags in messages),
    )


def _valid_name(name: str) -> str:
    name = canonical_name(name)
    if not name or any(c in name for c in "*%\r\n\0") or DELIMITER * 2 in name:
        raise MailboxError(f"{name!r} is not a valid mailbox name")
    return name


def user_mailboxes(user: str) -> list[MailboxSnapshot]:
    """Every mailbox of ``user`` with its messages' UIDs and flags; UserError if no such user."""
    boxes = list(Mailbox.select().where(Mailbox.user == _user(user)).order_by(Mailbox.name))
    messages: dict[int, list[tuple[int, str]]] = {box.id: [] for box in boxes}
    rows = (
        Message.select(Message.mailbox, Message.uid, Message.flags)
        .where(Message.mailbox.in_(list(messages)))
        .order_by(Message.mailbox, Message.uid)
        .tuples()
    )
    for mailbox_id, uid, flags in rows:
        messages[mailbox_id].append((uid, flags))
    return [_snapshot(box, messages[box.id]) for box in boxes]


def create_mailbox(user: str, name: str, now: float) -> list[MailboxSnapshot]:
    """Create mailbox ``name`` and any missing superiors; returns the created ones."""
    name = _valid_name(name)
    with database.atomic():
        owner = _user(user)
        existing = {box.name: box.uidvalidity for box in Mailbox.select().where(Mailbox.user == owner)}
        if name in existing:
            raise MailboxError(f"mailbox {name!r} already exists")
        # A re-created name must never reuse an old UIDVALIDITY with restarted UIDs.
        uidvalidity = max([int(now), *(value + 1 for value in existing.values())])
        parts = name.split(DELIMITER)
        created = []
        for depth in range(1, len(parts) + 1):
            path = DELIMITER.join(parts[:depth])
            if path not in existing:
                box = Mailbox.create(user=owner, name=path, uidvalidity=uidvalidity)
                created.append(_snapshot(box, ()))
    return created


def delete_mailbox(user: str, name: str) -> None:
    """Delete a mailbox without inferiors, and its messages."""
    with database.atomic():
        box = _mailbox(user, name)
        if box.name == "INBOX":
            raise MailboxError("INBOX cannot be deleted")
        children = Mailbox.select().where(
            Mailbox.user == box.user, Mailbox.name.startswith(box.name + DELIMITER)
        )
        if children.exists():
            raise MailboxError(f"mailbox {box.name!r} has mailboxes inside it: delete those first")
        Message.delete().where(Message.mailbox == box).execute()
        box.delete_instance()


def rename_mailbox(user: str, old: str, new: str) -> list[tuple[str, str]]:
    """Rename a mailbox and its inferiors; returns the (old, new) name pairs."""
    old, new = canonical_name(old), _valid_name(new)
    if "INBOX" in (old, new):
        raise MailboxError("INBOX cannot be renamed")
    with database.atomic():
        box = _mailbox(user, old)
        boxes = list(Mailbox.select().where(Mailbox.user == box.user))
        if new in {other.name for other in boxes}:
            raise MailboxError(f"mailbox {new!r} already exists")
        renamed = []
        for other in boxes:
            if other.name == old or other.name.startswith(old + DELIMITER):
                renamed.append((other.name, new + other.name[len(old) :]))
                other.name = renamed[-1][1]
                other.save()
    return renamed


def set_subscribed(user: str, name: str, subscribed: bool) -> None:
    """Subscribe to a mailbox, or unsubscribe."""
    box = _mailbox(user, name)
    box.subscribed = subscribed
    box.save()


def add_message(
    user: str,
    mailbox: str,
    body: bytes,
    *,
    flags: Iterable[str],
    internaldate: float,
    message_id: str | None,
    sender_node: str | None,
) -> tuple[int, int] | None:
    """Store a message; returns (mailbox id, UID), or None if (sender_node, message_id) is there."""
    with database.atomic():
        box = _mailbox(user, mailbox)
        if message_id is not None and sender_node is not None:
            duplicate = Message.select().where(
                Message.mailbox == box,
                Message.sender_node == sender_node,
                Message.message_id == message_id,
            )
            if duplicate.exists():
                return None
        uid = box.uidnext
        Mailbox.update(uidnext=uid + 1).where(Mailbox.id == box.id).execute()
        Message.create(
            mailbox=box,
            uid=uid,
            flags=_format_flags(normalize_flags(flags)),
            internaldate=internaldate,
            size=len(body),
            body=body,
            message_id=message_id,
            sender_node=sender_node,
        )
    return box.id, uid


def copy_messages(
    mailbox_id: int, uids: Sequence[int], user: str, target: str
) -> tuple[int, list[tuple[int, frozenset[str]]]]:
    """Copy messages into mailbox ``target``; returns its id and the new (UID, flags)."""
    with database.atomic():
        box = _mailbox(user, target)
        first = box.uidnext
        rows = []
        for chunk in _chunks(uids):
            query = Message.select().where(Message.mailbox == mailbox_id, Message.uid.in_(list(chunk)))
            for message in query.order_by(Message.uid):
                rows.append(
                    {
                        "mailbox": box.id,
                        "uid": first + len(rows),
                        "flags": message.flags,
                        "internaldate": message.internaldate,
                        "size": message.size,
                        "body": message.body,
                        "message_id": message.message_id,
                        "sender_node": message.sender_node,
                    }
                )
        for chunk in _chunks(rows):
            Message.insert_many(chunk).execute()
        Mailbox.update(uidnext=first + len(rows)).where(Mailbox.id == box.id).execute()
    return box.id, [(row["uid"], _parse_flags(row["flags"])) for row in rows]


def load_messages(mailbox_id: int, uids: Sequence[int], *, bodies: bool) -> list[StoredMessage]:
    """The messages with these UIDs that still exist, in UID order."""
    fields = [Message.uid, Message.flags, Message.internaldate, Message.size]
    if bodies:
        fields.append(Message.body)
    found = []
    for chunk in _chunks(sorted(uids)):
        query = Message.select(*fields).where(Message.mailbox == mailbox_id, Message.uid.in_(list(chunk)))
        for row in query.order_by(Message.uid).tuples():
            body = bytes(row[4]) if bodies else None
            found.append(StoredMessage(row[0], _parse_flags(row[1]), row[2], row[3], body))
    return found


def store_flags(
    mailbox_id: int, uids: Sequence[int], flags: Iterable[str], mode: int
) -> dict[int, frozenset[str]]:
    """Add (mode 1), remove (-1) or replace (0) flags; returns the new flags of changed messages."""
    given = normalize_flags(flags)
    changed = {}
    with database.atomic():
        for chunk in _chunks(uids):
            query = Message.select(Message.id, Message.uid, Message.flags).where(
                Message.mailbox == mailbox_id, Message.uid.in_(list(chunk))
            )
            for row_id, uid, text in query.tuples():
                old = _parse_flags(text)
                new = old | given if mode > 0 else old - given if mode < 0 else given
                if new != old:
                    Message.update(flags=_format_flags(new)).where(Message.id == row_id).execute()
                    changed[uid] = new
    return changed


def expunge(mailbox_id: int) -> list[int]:
    """Remove the messages flagged ``\\Deleted``; returns their UIDs in ascending order."""
    with database.atomic():
        query = Message.select(Message.uid, Message.flags).where(Message.mailbox == mailbox_id)
        doomed = sorted(uid for uid, text in query.tuples() if "\\Deleted" in _parse_flags(text))
        for chunk in _chunks(doomed):
            Message.delete().where(Message.mailbox == mailbox_id, Message.uid.in_(list(chunk))).execute()
    return doomed
