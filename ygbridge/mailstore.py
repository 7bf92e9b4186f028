"""The reactor side of mail storage: delivery into mailboxes, and live mailbox state for IMAP.

While a user has IMAP sessions open, the Mailstore keeps that user's mailboxes (UIDs and
flags) in memory and applies every change made through it, then tells the watchers (open
IMAP sessions) of the mailbox. Store work runs on the DB thread in FIFO order and its results
come back in that order, so a snapshot plus the changes that arrive after it is always current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ygbridge.store import mailboxes
from ygbridge.store.mailboxes import MailboxSnapshot, StoredMessage, canonical_name, normalize_flags

P = ParamSpec("P")
T = TypeVar("T")


class DBRunner(Protocol):
    """What runs blocking store functions: :class:`ygbridge.store.db.StoreThread`, or a test fake."""

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


class MailboxWatcher(Protocol):
    """An open session on a mailbox (see ``ygbridge.imap.mailbox.SessionMailbox``)."""

    def messages_added(self, uids: Sequence[int]) -> None: ...

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None: ...

    def messages_expunged(self, uids: Sequence[int]) -> None: ...


class MailboxState:
    """One mailbox of a logged-in user: UID -> flags in UID order, plus its watchers."""

    def __init__(self, snapshot: MailboxSnapshot) -> None:
        self.id = snapshot.id
        self.name = snapshot.name
        self.uidvalidity = snapshot.uidvalidity
        self.uidnext = snapshot.uidnext
        self.subscribed = snapshot.subscribed
        self.special_use = snapshot.special_use
        self.messages: dict[int, frozenset[str]] = dict(snapshot.messages)
        self.watchers: set[MailboxWatcher] = set()

    # The apply_* methods are for the Mailstore, after the change is in the database.

    def apply_added(self, messages: Sequence[tuple[int, frozenset[str]]]) -> None:
        new = [(uid, flags) for uid, flags in messages if uid not in self.messages]
        if new:
            self.messages.update(new)
            self.uidnext = max(self.uidnext, new[-1][0] + 1)
            for watcher in list(self.watchers):
                watcher.messages_added([uid for uid, _ in new])

    def apply_flags(self, flags: Mapping[int, frozenset[str]], origin: object) -> None:
        changed = {uid: value for uid, value in flags.items() if uid in self.messages}
        self.messages.update(changed)
        for watcher in [w for w in self.watchers if w is not origin and changed]:
            watcher.flags_changed(changed)

    def apply_removed(self, uids: Sequence[int], origin: object) -> None:
        gone = [uid for uid in uids if self.messages.pop(uid, None) is not None]
        for watcher in [w for w in self.watchers if w is not origin and gone]:
            watcher.messages_expunged(gone)


class UserMailboxes:
    """All mailboxes of one logged-in user, shared by that user's sessions."""

    def __init__(self, user: str, snapshots: Iterable[MailboxSnapshot]) -> None:
        self.user = user
        self.mailboxes = {snapshot.name: MailboxState(snapshot) for snapshot in snapshots}
        self.sessions = 0

    def get(self, name: str) -> MailboxState | None:
        """The mailbox called ``name`` (INBOX in any case), if there is one."""
        return self.mailboxes.get(canonical_name(name))

    def by_id(self, mailbox_id: int) -> MailboxState | None:
        """The mailbox with this database id, if it is still there."""
        return next((box for box in self.mailboxes.values() if box.id == mailbox_id), None)


class Mailstore:
    """Stores messages and keeps open IMAP sessions informed of every change."""

    def __init__(self, db: DBRunner, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock
        self._users: dict[str, UserMailboxes] = {}

    def deliver(
        self,
        user: str,
        body: bytes,
        *,
        message_id: str | None,
        sender_node: str | None,
        mailbox: str = "INBOX",
        flags: Sequence[str] = (),
    ) -> Deferred[int | None]:
        """Store a message for ``user``; fires with its UID, or None if it is already stored.

        Dedupe is on (mailbox, sender_node, message_id) and only when both are given.
        Errbacks with UserError / NoSuchMailbox if there is no such user or mailbox.
        """
        now = self._clock.seconds()
        return Deferred.fromCoroutine(self._add(user, mailbox, body, flags, now, message_id, sender_node))

    async def append(
        self, user: str, mailbox: str, body: bytes, flags: Iterable[str], internaldate: float | None
    ) -> int:
        """Store a message from an IMAP client (APPEND); returns its UID."""
        when = self._clock.seconds() if internaldate is None else internaldate
        uid = await self._add(user, mailbox, body, flags, when, None, None)
        assert uid is not None, "no dedupe without a message id"
        return uid

    async def _add(
        self,
        user: str,
        mailbox: str,
        body: bytes,
        flags: Iterable[str],
        internaldate: float,
        message_id: str | None,
        sender_node: str | None,
    ) -> int | None:
        flags = normalize_flags(flags)
        added = await self._db.run(
            mailboxes.add_message,
            user,
            mailbox,
            body,
            flags=flags,
            internaldate=internaldate,
            message_id=message_id,
            sender_node=sender_node,
        )
        if added is None:
            return None
        mailbox_id, uid = added
        self._added(user, mailbox_id, [(uid, flags)])
        return uid

    def _added(self, user: str, mailbox_id: int, messages: Sequence[tuple[int, frozenset[str]]]) -> None:
        account = self._users.get(user)
        box = account.by_id(mailbox_id) if account is not None else None
        if box is not None:
            box.apply_added(messages)

    async def open_user(self, user: str) -> UserMailboxes:
        """The live mailboxes of ``user`` for a new session; pair with :meth:`close_user`."""
        snapshots = await self._db.run(mailboxes.user_mailboxes, user)
        account = self._users.get(user)
        if account is None:  # otherwise the one in memory is already current
            account = self._users[user] = UserMailboxes(user, snapshots)
        account.sessions += 1
        return account

    def close_user(self, account: UserMailboxes) -> None:
        """A session of this user ended; forget the state when it was the last one."""
        account.sessions -= 1
        if account.sessions == 0 and self._users.get(account.user) is account:
            del self._users[account.user]

    async def create(self, account: UserMailboxes, name: str) -> None:
        """Create a mailbox (and missing superiors)."""
        created = await self._db.run(mailboxes.create_mailbox, account.user, name, self._clock.seconds())
        for snapshot in created:
            account.mailboxes[snapshot.name] = MailboxState(snapshot)

    async def delete(self, account: UserMailboxes, name: str) -> None:
        """Delete a mailbox and its messages."""
        await self._db.run(mailboxes.delete_mailbox, account.user, name)
        account.mailboxes.pop(canonical_name(name), None)

    async def rename(self, account: UserMailboxes, old: str, new: str) -> None:
        """Rename a mailbox and its inferiors."""
        for before, after in await self._db.run(mailboxes.rename_mailbox, account.user, old, new):
            box = account.mailboxes.pop(before)
            box.name = after
            account.mailboxes[after] = box

    async def subscribe(self, account: UserMailboxes, name: str, subscribed: bool) -> None:
        """Subscribe to a mailbox, or unsubscribe."""
        await self._db.run(mailboxes.set_subscribed, account.user, name, subscribed)
        box = account.get(name)
        if box is not None:
            box.subscribed = subscribed

    async def fetch(self, box: MailboxState, uids: Sequence[int], *, bodies: bool) -> list[StoredMessage]:
        """The stored messages with these UIDs (bodies only if asked for)."""
        return await self._db.run(mailboxes.load_messages, box.id, uids, bodies=bodies)

    async def store_flags(
        self, box: MailboxState, uids: Sequence[int], flags: Iterable[str], mode: int, origin: object
    ) -> None:
        """Add (mode 1), remove (-1) or replace (0) flags; watchers other than ``origin`` hear of it."""
        changed = await self._db.run(mailboxes.store_flags, box.id, uids, list(flags), mode)
        box.apply_flags(changed, origin)

    async def expunge(self, box: MailboxState, origin: object) -> list[int]:
        """Remove messages flagged ``\\Deleted``; returns their UIDs, ascending."""
        uids = await self._db.run(mailboxes.expunge, box.id)
        box.apply_removed(uids, origin)
        return uids

    async def copy(self, box: MailboxState, uids: Sequence[int], account: UserMailboxes, target: str) -> None:
        """Copy messages into another mailbox of the same user."""
        target_id, added = await self._db.run(mailboxes.copy_messages, box.id, uids, account.user, target)
        self._added(account.user, target_id, added)
