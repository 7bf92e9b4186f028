"""IMAP accounts and mailboxes over the Mailstore (twisted.mail's IAccount and IMailbox).

select() is synchronous (Twisted issue 9282): a user's mailboxes are loaded at login and the
Mailstore keeps them current. Each session sees a mailbox through a SessionMailbox with its
own UID list, so its sequence numbers change only when it is told of an EXPUNGE.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.mail.imap4 import (
    IAccount,
    ICloseableMailbox,
    IMailbox,
    IMailboxInfo,
    IMailboxListener,
    INamespacePresenter,
    ISearchableMailbox,
    MessageSet,
)
from zope.interface import implementer

from ygbridge.errors import MailboxError, UserError
from ygbridge.imap.message import ImapMessage, parse_date_time
from ygbridge.imap.search import Predicate, compile_search
from ygbridge.mailstore import MailboxState, Mailstore, UserMailboxes
from ygbridge.store.mailboxes import DELIMITER, SYSTEM_FLAGS, canonical_name

#: Messages read from the database per round trip during SEARCH.
SEARCH_BATCH = 200


class ISessionListener(IMailboxListener):
    """A session told that other sessions expunged messages it still numbers."""

    def expungesPending() -> None:  # type: ignore[misc]
        """Report them (``take_expunged``) at the next point a command allows EXPUNGE."""


@implementer(IMailboxInfo)
class MailboxListing:
    """A mailbox as LIST shows it: name attributes, not message flags."""

    def __init__(self, attributes: Sequence[str]) -> None:
        self._attributes = list(attributes)

    def getFlags(self) -> list[str]:
        return self._attributes

    def getHierarchicalDelimiter(self) -> str:
        return DELIMITER


@implementer(IMailbox, ICloseableMailbox, ISearchableMailbox)
class SessionMailbox:
    """One session's view of a mailbox; a watcher of its MailboxState while it has listeners."""

    def __init__(self, account: ImapAccount, box: MailboxState, writeable: bool) -> None:
        self._account = account
        self.box = box
        self._writeable = writeable
        self._uids = list(box.messages)  # sequence number - 1 -> UID, ascending
        self._expunged: list[int] = []  # expunged elsewhere, not reported to this session yet
        self._listeners: list[IMailboxListener] = []

    def flags(self, uid: int) -> frozenset[str]:
        """The current flags of a message (none once it is expunged)."""
        return self.box.messages.get(uid, frozenset())

    def _seq(self, uid: int) -> int | None:
        index = bisect_left(self._uids, uid)
        return index + 1 if index < len(self._uids) and self._uids[index] == uid else None

    # IMailboxInfo / IMailbox

    def getFlags(self) -> list[str]:
        keywords = {flag for flags in self.box.messages.values() for flag in flags}
        return [*SYSTEM_FLAGS, *sorted(keywords.difference(SYSTEM_FLAGS))]

    def getHierarchicalDelimiter(self) -> str:
        return DELIMITER

    def getUIDValidity(self) -> int:
        return self.box.uidvalidity

    def getUIDNext(self) -> int:
        return self.box.uidnext

    def getUID(self, message: int) -> int:
        return self._uids[message - 1]

    def getMessageCount(self) -> int:
        return len(self._uids)

    def getRecentCount(self) -> int:
        return 0

    def getUnseenCount(self) -> int:
        return sum("\\Seen" not in self.flags(uid) for uid in self._uids)

    def isWriteable(self) -> bool:
        return self._writeable

    def requestStatus(self, names: Iterable[str]) -> dict[str, int]:
        values: dict[str, Callable[[], int]] = {
            "MESSAGES": self.getMessageCount,
            "RECENT": self.getRecentCount,
            "UIDNEXT": self.getUIDNext,
            "UIDVALIDITY": self.getUIDValidity,
            "UNSEEN": self.getUnseenCount,
        }
        return {name.upper(): values[name.upper()]() for name in names if name.upper() in values}

    def addListener(self, listener: IMailboxListener) -> None:
        self._listeners.append(listener)
        self.box.watchers.add(self)

    def removeListener(self, listener: IMailboxListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners:
            self.box.watchers.discard(self)

    def close(self) -> None:
        self._listeners.clear()
        self.box.watchers.discard(self)

    def addMessage(
        self, message: IO[bytes], flags: Iterable[str], date: bytes | str | None = None
    ) -> Deferred[int]:
        when = None if date is None else parse_date_time(date)
        return self._account.append(self.box.name, message.read(), flags, when)

    def expunge(self) -> Deferred[list[int]]:
        return Deferred.fromCoroutine(self._expunge())

    def fetch(self, messages: MessageSet, uid: bool) -> Deferred[list[tuple[int, ImapMessage]]]:
        return Deferred.fromCoroutine(self.load(self.resolve(messages, uid), bodies=True))

    def store(
        self, messages: MessageSet, flags: Iterable[str], mode: int, uid: bool
    ) -> Deferred[dict[int, list[str]]]:
        return Deferred.fromCoroutine(self.set_flags(self.resolve(messages, uid), flags, mode))

    def search(self, query: list[Any], uid: bool) -> Deferred[list[int]]:
        """Sequence numbers of the messages matching parsed SEARCH keys (the server maps UIDs)."""
        matches, bodies = compile_search(query, len(self._uids), self._uids[-1] if self._uids else 0)
        return Deferred.fromCoroutine(self._search(matches, bodies))

    async def _search(self, matches: Predicate, bodies: bool) -> list[int]:
        items = list(enumerate(self._uids, 1))
        found = []
        for start in range(0, len(items), SEARCH_BATCH):
            loaded = await self.load(items[start : start + SEARCH_BATCH], bodies=bodies)
            found += [seq for seq, message in loaded if matches(seq, message)]
        return found

    # What the server uses beyond IMailbox

    def resolve(self, messages: MessageSet, uid: bool) -> list[tuple[int, int]]:
        """The (sequence number, UID) pairs a sequence set or UID set names, ascending."""
        ids = MessageSet(messages.ranges)
        ids.last = (self._uids[-1] if self._uids else 0) if uid else len(self._uids)
        return [(seq, u) for seq, u in enumerate(self._uids, 1) if (u if uid else seq) in ids]

    async def load(self, items: Sequence[tuple[int, int]], *, bodies: bool) -> list[tuple[int, ImapMessage]]:
        """The messages of these (sequence number, UID) pairs that still exist."""
        seqs = {uid: seq for seq, uid in items}
        stored = await self._account.mailstore.fetch(self.box, list(seqs), bodies=bodies)
        return [(seqs[message.uid], ImapMessage(message, self.flags)) for message in stored]

    async def set_flags(
        self, items: Sequence[tuple[int, int]], flags: Iterable[str], mode: int
    ) -> dict[int, list[str]]:
        """STORE: add (mode 1), remove (-1) or replace (0) flags; returns sequence number -> flags."""
        if not self._writeable:
            raise MailboxError("the mailbox is open read-only")
        uids = [uid for _, uid in items]
        await self._account.mailstore.store_flags(self.box, uids, flags, mode, origin=self)
        return {seq: sorted(self.box.messages[uid]) for seq, uid in items if uid in self.box.messages}

    async def copy_to(self, items: Sequence[tuple[int, int]], target: str) -> None:
        """COPY these messages into another mailbox of the account."""
        await self._account.mailstore.copy(
            self.box, [uid for _, uid in items], self._account.mailboxes, target
        )

    async def _expunge(self) -> list[int]:
        self._expunged.extend(await self._account.mailstore.expunge(self.box, origin=self))
        return self.take_expunged()

    def take_expunged(self) -> list[int]:
        """Forget messages expunged since the last call; returns the EXPUNGE numbers to send."""
        numbers = []
        for uid in sorted(set(self._expunged)):
            seq = self._seq(uid)
            if seq is not None:
                del self._uids[seq - 1]
                numbers.append(seq)
        self._expunged.clear()
        return numbers

    # MailboxWatcher: called by the Mailstore

    def messages_added(self, uids: Sequence[int]) -> None:
        self._uids.extend(uids)
        for listener in list(self._listeners):
            listener.newMessages(len(self._uids), None)

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None:
        changed = {seq: sorted(value) for uid, value in flags.items() if (seq := self._seq(uid)) is not None}
        if changed:
            for listener in list(self._listeners):
                listener.flagsChanged(changed)

    def messages_expunged(self, uids: Sequence[int]) -> None:
        self._expunged.extend(uids)
        for listener in list(self._listeners):
            session = ISessionListener(listener, None)
            if session is not None:
                session.expungesPending()


def _pattern(reference: str, wildcard: str) -> re.Pattern[str]:
    """LIST's reference + mailbox with ``*`` (anything) and ``%`` (anything but the delimiter)."""
    special = {"*": ".*", "%": f"[^{re.escape(DELIMITER)}]*"}
    name = canonical_name(reference + wildcard)
    return re.compile("".join(special.get(c) or re.escape(c) for c in name) + r"\Z")


@implementer(IAccount, INamespacePresenter)
class ImapAccount:
    """A logged-in user's mailboxes; ``logout`` ends the session's hold on them."""

    def __init__(self, mailstore: Mailstore, mailboxes: UserMailboxes) -> None:
        self.mailstore = mailstore
        self.mailboxes = mailboxes
        self._open = True

    def logout(self) -> None:
        """Release the user's live mailboxes (called once the connection is gone)."""
        if self._open:
            self._open = False
            self.mailstore.close_user(self.mailboxes)

    def select(self, name: str, rw: bool = True) -> SessionMailbox | None:
        box = self.mailboxes.get(name)
        return None if box is None else SessionMailbox(self, box, bool(rw))

    def append(
        self, name: str, body: bytes, flags: Iterable[str], internaldate: float | None
    ) -> Deferred[int]:
        """APPEND a message to mailbox ``name``; fires with its UID."""
        user = self.mailboxes.user
        return Deferred.fromCoroutine(self.mailstore.append(user, name, body, flags, internaldate))

    def create(self, pathspec: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mailstore.create(self.mailboxes, pathspec))

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mailstore.delete(self.mailboxes, name))

    def rename(self, oldname: str, newname: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mailstore.rename(self.mailboxes, oldname, newname))

    def isSubscribed(self, name: str) -> bool:
        box = self.mailboxes.get(name)
        return box is not None and box.subscribed

    def subscribe(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mailstore.subscribe(self.mailboxes, name, True))

    def unsubscribe(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mailstore.subscribe(self.mailboxes, name, False))

    def listMailboxes(self, ref: str, wildcard: str) -> list[tuple[str, MailboxListing]]:
        if not wildcard:  # asks for the delimiter and the root of the reference
            return [(ref.partition(DELIMITER)[0], MailboxListing(["\\Noselect"]))]
        pattern = _pattern(ref, wildcard)
        names = sorted(self.mailboxes.mailboxes)
        listed = []
        for name in filter(pattern.match, names):
            box = self.mailboxes.mailboxes[name]
            parent = any(other.startswith(name + DELIMITER) for other in names)
            attributes = ["\\HasChildren" if parent else "\\HasNoChildren"]
            listed.append((name, MailboxListing(attributes + ([box.special_use] if box.special_use else []))))
        return listed

    def getPersonalNamespaces(self) -> list[list[str]]:
        return [["", DELIMITER]]

    def getSharedNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None


@implementer(IRealm)
class ImapRealm:
    """Gives an ImapAccount for a user name (the avatar id of the password checker)."""

    def __init__(self, mailstore: Mailstore) -> None:
        self._mailstore = mailstore

    def requestAvatar(
        self, avatarId: str | bytes, mind: object, *interfaces: Any
    ) -> Deferred[tuple[Any, ...]]:
        if IAccount not in interfaces:
            raise NotImplementedError("the IMAP realm only gives IAccount avatars")
        user = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return Deferred.fromCoroutine(self._login(user))

    async def _login(self, user: str) -> tuple[Any, ...]:
        try:
            mailboxes = await self._mailstore.open_user(user)
        except UserError:
            raise UnauthorizedLogin(f"no such user: {user}") from None
        account = ImapAccount(self._mailstore, mailboxes)
        return IAccount, account, account.logout
