"""A user's mailboxes (names, UIDVALIDITY, subscriptions): blocking functions for the DB thread.

Every function returns plain values, never a lazy query. The messages in them: store.messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from ygbridge.errors import MailboxError, NoSuchMailbox, UserError
from ygbridge.store.models import Mailbox, Message, User, database

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


def _valid_name(name: str) -> str:
    name = canonical_name(name)
    if not name or any(c in name for c in "*%\r\n\0") or DELIMITER * 2 in name:
        raise MailboxError(f"{name!r} is not a valid mailbox name")
    return name


def user_mailboxes(user: str) -> list[MailboxInfo]:
    """Every mailbox of ``user``, by name; UserError if there is no such user."""
    return [_info(box) for box in Mailbox.select().where(Mailbox.user == _user(user)).order_by(Mailbox.name)]


def create_mailbox(user: str, name: str, now: float) -> list[MailboxInfo]:
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
                created.append(_info(Mailbox.create(user=owner, name=path, uidvalidity=uidvalidity)))
    return created


def delete_mailbox(user: str, name: str) -> None:
    """Delete a mailbox without inferiors, and its messages."""
    with database.atomic():
        box = find_mailbox(user, name)
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
        box = find_mailbox(user, old)
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
    box = find_mailbox(user, name)
    box.subscribed = subscribed
    box.save()
