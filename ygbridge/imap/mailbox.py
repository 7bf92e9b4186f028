"""A logged-in IMAP user: the mailboxes of the account over the MailHub, and the realm.

The protocol (imap.server) asks this for what it needs; nothing here writes IMAP responses.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

from ygbridge.errors import NoSuchMailbox, UserError
from ygbridge.imap.session import SelectedMailbox
from ygbridge.imap.wildcards import MailboxPattern
from ygbridge.mailhub import MailboxState, MailHub, UserMailboxes
from ygbridge.store.mailboxes import DELIMITER, canonical_name
from ygbridge.store.messages import Added, Contents, Counts


class IImapAccount(Interface):
    """What the IMAP realm hands out for a logged-in user: an :class:`ImapAccount`."""


class MailboxListing:
    """A mailbox as LIST shows it: name attributes (RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE)."""

    def __init__(self, attributes: Sequence[str]) -> None:
        self._attributes = list(attributes)

    def getFlags(self) -> list[str]:
        return self._attributes

    def getHierarchicalDelimiter(self) -> str:
        return DELIMITER


@implementer(IImapAccount)
class ImapAccount:
    """A logged-in user's mailboxes; ``logout`` ends the session's hold on them."""

    def __init__(self, mailhub: MailHub, mailboxes: UserMailboxes) -> None:
        self.mailhub = mailhub
        self.mailboxes = mailboxes
        self._open = True

    def logout(self) -> None:
        """Release the user's live mailboxes (called once the connection is gone)."""
        if self._open:
            self._open = False
            self.mailhub.close_user(self.mailboxes)

    def mailbox(self, name: str) -> MailboxState:
        """The mailbox called ``name``; NoSuchMailbox if there is none."""
        box = self.mailboxes.get(name)
        if box is None:
            raise NoSuchMailbox(f"there is no mailbox {name!r}")
        return box

    async def select(
        self, name: str, writeable: bool, on_change: Callable[[], None]
    ) -> tuple[SelectedMailbox, Contents]:
        """Open a mailbox for a session (SELECT, EXAMINE); it watches the mailbox until closed.

        SELECT claims the mailbox's \\Recent messages for this session; EXAMINE leaves them.
        """
        box = self.mailbox(name)
        uids, contents = await self.mailhub.contents(self.mailboxes, box, claim=writeable)
        claimed = None if contents.claimed is None else box.claim(*contents.claimed)
        view = SelectedMailbox(box, uids, claimed, writeable, on_change)  # same turn: see MailHub
        return view, contents

    def select_now(
        self, name: str, writeable: bool, on_change: Callable[[], None]
    ) -> tuple[SelectedMailbox, Contents] | None:
        """:meth:`select` when memory answers it (nothing to claim, nothing changed since it was
        read), without a trip to the DB thread; None if it needs one."""
        box = self.mailbox(name)
        known = self.mailhub.known_contents(self.mailboxes, box, claim=writeable)
        if known is None:
            return None
        uids, contents = known
        return SelectedMailbox(box, uids, None, writeable, on_change), contents

    async def status(self, name: str) -> Counts:
        return await self.mailhub.counts(self.mailbox(name))

    def status_now(self, name: str) -> Counts | None:
        """:meth:`status` when memory answers it; None if it needs the DB thread."""
        return self.mailbox(name).counts

    async def append(self, name: str, body: bytes, flags: Iterable[str], internaldate: float | None) -> Added:
        """APPEND a message to mailbox ``name``."""
        return await self.mailhub.append(self.mailboxes.user, name, body, flags, internaldate)

    async def create(self, name: str) -> None:
        await self.mailhub.create(self.mailboxes, name)

    async def delete(self, name: str) -> None:
        await self.mailhub.delete(self.mailboxes, name)

    async def rename(self, old: str, new: str) -> None:
        await self.mailhub.rename(self.mailboxes, old, new)

    async def subscribe(self, name: str, subscribed: bool) -> None:
        await self.mailhub.subscribe(self.mailboxes, name, subscribed)

    # What LIST and LSUB call

    def isSubscribed(self, name: str) -> bool:
        box = self.mailboxes.get(name)
        return box is not None and box.subscribed

    def listMailboxes(self, ref: str, wildcard: str) -> list[tuple[str, MailboxListing]]:
        """The mailboxes LIST shows for ``ref`` and ``wildcard``, by name.

        O(n log n) in the user's mailboxes (sorted names, a pattern run in linear time, children
        found by bisection); LSUB filters the same answer with :meth:`isSubscribed`.
        """
        if not wildcard:  # asks for the delimiter and the root of the reference
            return [(ref.partition(DELIMITER)[0], MailboxListing(["\\Noselect"]))]
        pattern = MailboxPattern(canonical_name(ref + wildcard), DELIMITER)
        account = self.mailboxes
        names = account.names()
        start = bisect_left(names, pattern.prefix)
        listed = []
        for name in islice(names, start, None):
            if not name.startswith(pattern.prefix):
                break
            if pattern.matches(name):
                attributes = ["\\HasChildren" if account.has_children(name) else "\\HasNoChildren"]
                special_use = account.mailboxes[name].special_use
                listed.append((name, MailboxListing(attributes + ([special_use] if special_use else []))))
        return listed


@implementer(IRealm)
class ImapRealm:
    """Gives an ImapAccount (as IImapAccount) for a user name (the password checker's avatar id)."""

    def __init__(self, mailhub: MailHub) -> None:
        self._mailhub = mailhub

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> Deferred[tuple[Any, ...]]:
        if IImapAccount not in interfaces:
            raise NotImplementedError("the IMAP realm only gives IImapAccount avatars")
        if not isinstance(avatarId, bytes):
            raise NotImplementedError("the IMAP realm gives avatars to named users only")
        user = avatarId.decode("utf-8")
        return Deferred.fromCoroutine(self._login(user))

    async def _login(self, user: str) -> tuple[Any, ...]:
        try:
            mailboxes = await self._mailhub.open_user(user)
        except UserError:
            raise UnauthorizedLogin(f"no such user: {user}") from None
        account = ImapAccount(self._mailhub, mailboxes)
        return IImapAccount, account, account.logout
