"""A user's mailboxes (names, UIDVALIDITY, subscriptions): blocking functions for the DB thread.

Every function returns plain values, never a lazy query. The messages in them: store.messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee
from peewee import Value, fn

from ygbridge.errors import MailboxError, MailboxLimitReached, NoSuchMailbox, UserError
from ygbridge.store.models import DEFAULT_MAILBOXES, Mailbox, Message, User, database

#: The hierarchy delimiter of mailbox names.
DELIMITER = "/"


@dataclass(frozen=True)
class MailboxInfo:
    """A mailbox as a logged-in user's session list shows it."""

    id: int
    name: str
    subscribed: bool
    special_use: str | None


def canonical_name(name: str) -> str:
    """A mailbox name as stored: ``INBOX`` in any case is INBOX; a trailing delimiter goes."""
    name = name.rstrip(DELIMITER) or name
    head, sep, rest = name.partition(DELIMITER)
    return "INBOX" + sep + rest if head.upper() == "INBOX" else name


def _user(user: str) -> User:
    row = User.get_or_none(User.name == user)
    if row is None:
        raise UserError(f"no such user: {user}")
    return row


def find_mailbox(user: str, name: str) -> Mailbox:
    """The row of ``user``'s mailbox ``name``; NoSuchMailbox, or UserError if there is no such user."""
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


def _info(box: Mailbox) -> MailboxInfo:
    return MailboxInfo(id=box.id, name=box.name, subscribed=box.subscribed, special_use=box.special_use)


#: Longest mailbox name (the database column's width).
MAX_NAME = 255


def _valid_name(name: str) -> str:
    name = canonical_name(name)
    if not name or any(c in name for c in "*%\r\n\0") or DELIMITER * 2 in name:
        raise MailboxError(f"{name!r} is not a valid mailbox name")
    if len(name) > MAX_NAME:
        raise MailboxError(f"a mailbox name has at most {MAX_NAME} characters")
    return name


def _superiors(name: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``: the names above ``name`` in the hierarchy."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:depth]) for depth in range(1, len(parts))]


def _subtree(owner: User, name: str) -> peewee.Expression:
    """The mailboxes of ``owner`` called ``name`` or below it (exact, case-sensitive prefix)."""
    below = name + DELIMITER
    return (Mailbox.user == owner) & (
        (Mailbox.name == name) | (fn.substr(Mailbox.name, 1, len(below)) == below)
    )


def _existing(owner: User, names: list[str]) -> set[str]:
    """Which of ``names`` are mailboxes of ``owner`` (indexed lookups)."""
    if not names:
        return set()
    rows = Mailbox.select(Mailbox.name).where(Mailbox.user == owner, Mailbox.name.in_(names))
    return {row.name for row in rows}


def _add(owner: User, names: list[str], now: float, limit: int | None) -> list[MailboxInfo]:
    """Create mailboxes ``names`` (none exists) within ``limit``, each with a UIDVALIDITY this
    user has never had, so that a name created again never reuses one with restarted UIDs."""
    if not names:
        return []
    if limit is not None:
        count = Mailbox.select().where(Mailbox.user == owner).count()
        if count + len(names) > limit:
            raise MailboxLimitReached(limit)
    uidvalidity = max(int(now), owner.last_uidvalidity + 1)
    User.update(last_uidvalidity=uidvalidity).where(User.id == owner.id).execute()
    owner.last_uidvalidity = uidvalidity
    return [_info(Mailbox.create(user=owner, name=name, uidvalidity=uidvalidity)) for name in names]


def add_default_mailboxes(owner: User, now: float) -> None:
    """A new user's INBOX, Sent, Drafts, Trash and Junk, subscribed."""
    uidvalidity = max(int(now), owner.last_uidvalidity + 1)
    for name, special in DEFAULT_MAILBOXES.items():
        Mailbox.create(user=owner, name=name, uidvalidity=uidvalidity, special_use=special, subscribed=True)
    User.update(last_uidvalidity=uidvalidity).where(User.id == owner.id).execute()


def user_mailboxes(user: str) -> list[MailboxInfo]:
    """Every mailbox of ``user``, by name; UserError if there is no such user."""
    return [_info(box) for box in Mailbox.select().where(Mailbox.user == _user(user)).order_by(Mailbox.name)]


def create_mailbox(user: str, name: str, now: float, limit: int | None = None) -> list[MailboxInfo]:
    """Create mailbox ``name`` (not subscribed) and any missing superiors; returns the created ones.

    MailboxLimitReached if the user would have more than ``limit`` mailboxes.
    """
    name = _valid_name(name)
    with database.atomic():
        owner = _user(user)
        wanted = [*_superiors(name), name]
        existing = _existing(owner, wanted)
        if name in existing:
            raise MailboxError(f"mailbox {name!r} already exists")
        return _add(owner, [path for path in wanted if path not in existing], now, limit)


def delete_mailbox(user: str, name: str) -> None:
    """Delete a mailbox without inferiors, and its messages."""
    with database.atomic():
        box = find_mailbox(user, name)
        if box.name == "INBOX":
            raise MailboxError("INBOX cannot be deleted")
        below = Mailbox.select().where(_subtree(box.user, box.name), Mailbox.id != box.id)
        if below.exists():
            raise MailboxError(f"mailbox {box.name!r} has mailboxes inside it: delete those first")
        Message.delete().where(Message.mailbox == box).execute()
        box.delete_instance()


@dataclass(frozen=True)
class Renamed:
    """What RENAME changed: (old, new) name pairs, and the superiors of the new name it created."""

    names: list[tuple[str, str]]
    created: list[MailboxInfo]


def rename_mailbox(user: str, old: str, new: str, now: float, limit: int | None = None) -> Renamed:
    """Rename a mailbox and its inferiors, creating missing superiors of the new name."""
    old, new = canonical_name(old), _valid_name(new)
    if "INBOX" in (old, new):
        raise MailboxError("INBOX cannot be renamed")
    if new.startswith(old + DELIMITER):
        raise MailboxError(f"{old!r} cannot be moved inside itself")
    with database.atomic():
        box = find_mailbox(user, old)
        owner = box.user
        if Mailbox.select().where(_subtree(owner, new)).exists():
            raise MailboxError(f"mailbox {new!r} already exists")
        superiors = _superiors(new)
        existing = _existing(owner, superiors)
        created = _add(owner, [path for path in superiors if path not in existing], now, limit)
        moving = Mailbox.select(Mailbox.id, Mailbox.name).where(_subtree(owner, old)).order_by(Mailbox.name)
        names = [(row.name, new + row.name[len(old) :]) for row in moving]
        tail = fn.substr(Mailbox.name, len(old) + 1)
        Mailbox.update(name=Value(new).concat(tail)).where(_subtree(owner, old)).execute()
    return Renamed(names, created)


def set_subscribed(user: str, name: str, subscribed: bool) -> None:
    """Subscribe to a mailbox, or unsubscribe."""
    box = find_mailbox(user, name)
    box.subscribed = subscribed
    box.save()
