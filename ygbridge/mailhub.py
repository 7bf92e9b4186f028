"""The reactor side of mail storage: delivery into mailboxes, and telling open sessions of changes.

While a user has IMAP sessions, the MailHub keeps the list of that user's mailboxes (names,
subscriptions, special use) and, per mailbox, its watchers: the sessions that have it selected.
It holds no messages, only each mailbox's UIDs and flags once read (store.uidflags: 9 bytes a
message), kept current with every change, so that SELECT and a FETCH of flags are answered from
memory; those of mailboxes no session has selected are dropped, least recently selected first,
beyond ``IDLE_LISTED`` messages a user. Every change made through it is passed to the
mailbox's watchers once the database has it. Store work runs on the DB thread in FIFO
order and its results come back in that order, so a session that reads a mailbox
(:meth:`MailHub.contents`) and adds itself as a watcher in the same reactor turn hears of
exactly the changes its reading did not see.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, Protocol, TypeVar

import structlog
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ygbridge.store import mailboxes, messages, search
from ygbridge.store.batch import GroupCommit
from ygbridge.store.db import DBRunner
from ygbridge.store.flags import normalize_flags, pack_flags
from ygbridge.store.mailboxes import DELIMITER, MailboxInfo, canonical_name
from ygbridge.store.messages import Added, Contents, Counts, StoredMessage, Transferred
from ygbridge.store.search import Term
from ygbridge.store.uidflags import Packed, UidFlags

log = structlog.get_logger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

#: Messages whose UIDs and flags a user's mailboxes keep in memory while no session has them
#: selected (about 0.9 MB); a mailbox counts as ``LISTING_OVERHEAD`` more.
IDLE_LISTED = 100_000
LISTING_OVERHEAD = 32


class MailboxWatcher(Protocol):
    """An open session on a mailbox (see ``ygbridge.imap.session.SelectedMailbox``)."""

    writeable: bool

    def messages_added(self, uids: Sequence[int], recent: bool) -> None:
        """Messages with these UIDs arrived (``recent``: this session sees them as \\Recent)."""

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None:
        """Another session changed the flags of these UIDs."""

    def messages_expunged(self, uids: Sequence[int]) -> None:
        """Another session expunged these UIDs."""


class MailboxState:
    """One mailbox of a logged-in user, and the sessions watching it (in the order they came).

    ``listing`` is the UID and flags of every message once a session has read them (kept current
    by every change, so that the next SELECT and FETCH of flags need not read them again; None
    when not read, or dropped to bound memory); UIDs below ``claimed_upto`` are
    \\Recent to a session already, as far as this process has seen. ``counts`` and ``contents``
    are the last STATUS and SELECT answers read from the store, kept until the next change
    (``generation`` counts changes: an answer read while one happened is not kept). All of this
    holds because every change to the mailbox's messages goes through the MailHub.
    """

    def __init__(self, info: MailboxInfo) -> None:
        self.id = info.id
        self.name = info.name
        self.subscribed = info.subscribed
        self.special_use = info.special_use
        self.watchers: dict[MailboxWatcher, None] = {}
        self.listing: UidFlags | None = None
        self.opening = 0  # sessions selecting it, waiting for the store: its listing stays
        self.claimed_upto = 0
        self.generation = 0
        self.counts: Counts | None = None
        self.contents: Contents | None = None

    def changed(self) -> None:
        """Its messages, flags or \\Recent claims changed: what was read before is stale."""
        self.generation += 1
        self.counts = self.contents = None

    def _others(self, origin: object) -> list[MailboxWatcher]:
        return [watcher for watcher in self.watchers if watcher is not origin]

    def claim(self, low: int, high: int) -> tuple[int, int] | None:
        """The part of the UIDs ``low``..``high`` that a selecting session may claim as \\Recent:
        those no other session of this process claimed since the database said so."""
        low = max(low, self.claimed_upto)
        self.claimed_upto = max(self.claimed_upto, high + 1)
        return (low, high) if low <= high else None

    def forget(self) -> None:
        """Drop the listing (and the SELECT answer that goes with it) to save memory."""
        self.listing = self.contents = None

    def added(self, uids: Sequence[int], flags: Sequence[Packed]) -> bool:
        """New messages (``flags[n]`` those of ``uids[n]``): every watcher hears of them (the one
        that added them too), and the first read-write one gets them as \\Recent (RFC 3501
        2.3.2); whether one did."""
        if not uids:
            return False
        self.changed()
        if self.listing is not None:
            self.listing.add(uids, flags)
        claimer = next((watcher for watcher in self.watchers if watcher.writeable), None)
        if claimer is not None:
            self.claimed_upto = max(self.claimed_upto, max(uids) + 1)
        for watcher in list(self.watchers):
            watcher.messages_added(uids, recent=watcher is claimer)
        return claimer is not None

    def flags_changed(self, flags: Mapping[int, frozenset[str]], origin: object) -> None:
        """Flags of these UIDs changed: tell every session but ``origin``."""
        if flags:
            self.changed()
            if self.listing is not None:
                packed: dict[frozenset[str], Packed] = {}  # a STORE gives few distinct flag sets
                for uid, new in flags.items():
                    if new not in packed:
                        packed[new] = pack_flags(new)
                    self.listing.set_flags(uid, *packed[new])
            for watcher in self._others(origin):
                watcher.flags_changed(flags)

    def expunged(self, uids: Sequence[int], origin: object) -> None:
        """These UIDs are gone: forget them and tell every session but ``origin``."""
        if uids:
            self.changed()
        if uids and self.listing is not None:
            self.listing.remove(set(uids))
        if uids:
            for watcher in self._others(origin):
                watcher.messages_expunged(uids)


class UserMailboxes:
    """All mailboxes of one logged-in user, shared by that user's sessions."""

    def __init__(self, user: str, infos: Iterable[MailboxInfo]) -> None:
        self.user = user
        self.mailboxes = {info.name: MailboxState(info) for info in infos}
        self._by_id = {box.id: box for box in self.mailboxes.values()}
        self._sorted: list[str] | None = None
        self._listed: dict[MailboxState, None] = {}  # mailboxes with a listing, least recently selected first
        self.sessions = 0

    def get(self, name: str) -> MailboxState | None:
        """The mailbox called ``name`` (INBOX in any case), if there is one."""
        return self.mailboxes.get(canonical_name(name))

    def by_id(self, mailbox_id: int) -> MailboxState | None:
        """The mailbox with this database id, if it is still there."""
        return self._by_id.get(mailbox_id)

    def names(self) -> list[str]:
        """Every mailbox name, sorted (kept until the next change)."""
        if self._sorted is None:
            self._sorted = sorted(self.mailboxes)
        return self._sorted

    def has_children(self, name: str) -> bool:
        """Whether some mailbox lies below ``name`` in the hierarchy."""
        names, below = self.names(), name + DELIMITER
        at = bisect_left(names, below)
        return at < len(names) and names[at].startswith(below)

    def added(self, info: MailboxInfo) -> None:
        """A mailbox was created."""
        self.mailboxes[info.name] = self._by_id[info.id] = MailboxState(info)
        self._sorted = None

    def removed(self, name: str) -> None:
        """A mailbox was deleted (a session that has it selected reads what the store has left)."""
        box = self.mailboxes.pop(canonical_name(name), None)
        if box is not None:
            self._by_id.pop(box.id, None)
            self._listed.pop(box, None)
            box.changed()
            box.forget()
        self._sorted = None

    def selecting(self, box: MailboxState) -> None:
        """A session selects ``box`` (whose listing is kept): drop the listings of the least
        recently selected mailboxes that no session has selected, beyond ``IDLE_LISTED`` messages."""
        self._listed.pop(box, None)
        self._listed[box] = None
        idle = [other for other in self._listed if not (other.watchers or other.opening or other is box)]
        weight = sum(_weight(other) for other in idle)
        for other in idle:
            if weight <= IDLE_LISTED:
                break
            weight -= _weight(other)
            other.forget()
            del self._listed[other]

    def renamed(self, old: str, new: str) -> None:
        """A mailbox was renamed from ``old`` to ``new``."""
        box = self.mailboxes.pop(old)
        box.name = new
        self.mailboxes[new] = box
        self._sorted = None


def _weight(box: MailboxState) -> int:
    return LISTING_OVERHEAD + (len(box.listing) if box.listing is not None else 0)


class MailHub:
    """Stores messages and keeps open IMAP sessions informed of every change."""

    def __init__(self, db: DBRunner, clock: IReactorTime, mailboxes_per_user: int | None = None) -> None:
        self._db = db
        self._add_message = GroupCommit(db, messages.add_message)  # deliveries that meet: one commit
        self._clock = clock
        self._mailboxes_per_user = mailboxes_per_user
        self._users: dict[str, UserMailboxes] = {}

    def _box(self, user: str, mailbox_id: int) -> MailboxState | None:
        account = self._users.get(user)
        return account.by_id(mailbox_id) if account is not None else None

    def _added(self, user: str, mailbox_id: int, uids: Sequence[int], flags: Sequence[Packed]) -> None:
        box = self._box(user, mailbox_id)
        if box is not None and box.added(uids, flags):  # a session claimed them: no later one may
            claimed = self._db.run(messages.claim_recent, box.id, box.claimed_upto)
            claimed.addErrback(lambda failure: log.error("store.claim_failed", error=repr(failure.value)))

    # Delivery and APPEND

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

        async def deliver() -> int | None:
            added = await self._add(user, mailbox, body, flags, now, message_id, sender_node)
            return None if added is None else added.uid

        return Deferred.fromCoroutine(deliver())

    async def append(
        self, user: str, mailbox: str, body: bytes, flags: Iterable[str], internaldate: float | None
    ) -> Added:
        """Store a message from an IMAP client (APPEND)."""
        when = self._clock.seconds() if internaldate is None else internaldate
        added = await self._add(user, mailbox, body, flags, when, None, None)
        assert added is not None, "no dedupe without a message id"
        return added

    async def _add(
        self,
        user: str,
        mailbox: str,
        body: bytes,
        flags: Iterable[str],
        internaldate: float,
        message_id: str | None,
        sender_node: str | None,
    ) -> Added | None:
        normalized = normalize_flags(flags)
        added = await self._add_message(
            user,
            mailbox,
            body,
            flags=normalized,
            internaldate=internaldate,
            message_id=message_id,
            sender_node=sender_node,
        )
        if added is not None:
            self._added(user, added.mailbox_id, [added.uid], [pack_flags(normalized)])
        return added

    # A user's mailboxes

    async def open_user(self, user: str) -> UserMailboxes:
        """The live mailboxes of ``user`` for a new session; pair with :meth:`close_user`."""
        infos = await self._db.run(mailboxes.user_mailboxes, user)
        account = self._users.get(user)
        if account is None:  # otherwise the one in memory is already current
            account = self._users[user] = UserMailboxes(user, infos)
        account.sessions += 1
        return account

    def close_user(self, account: UserMailboxes) -> None:
        """A session of this user ended; forget the state when it was the last one."""
        account.sessions -= 1
        if account.sessions == 0 and self._users.get(account.user) is account:
            del self._users[account.user]

    async def create(self, account: UserMailboxes, name: str) -> None:
        """Create a mailbox (and missing superiors), unsubscribed; MailboxLimitReached past the cap."""
        created = await self._db.run(
            mailboxes.create_mailbox, account.user, name, self._clock.seconds(), self._mailboxes_per_user
        )
        for info in created:
            account.added(info)

    async def delete(self, account: UserMailboxes, name: str) -> None:
        """Delete a mailbox and its messages."""
        await self._db.run(mailboxes.delete_mailbox, account.user, name)
        account.removed(name)

    async def rename(self, account: UserMailboxes, old: str, new: str) -> None:
        """Rename a mailbox and its inferiors (creating missing superiors of the new name)."""
        renamed = await self._db.run(
            mailboxes.rename_mailbox, account.user, old, new, self._clock.seconds(), self._mailboxes_per_user
        )
        for info in renamed.created:
            account.added(info)
        for before, after in renamed.names:
            account.renamed(before, after)

    async def subscribe(self, account: UserMailboxes, name: str, subscribed: bool) -> None:
        """Subscribe to a mailbox, or unsubscribe."""
        await self._db.run(mailboxes.set_subscribed, account.user, name, subscribed)
        box = account.get(name)
        if box is not None:
            box.subscribed = subscribed

    # The messages of a mailbox

    async def contents(
        self, account: UserMailboxes, box: MailboxState, claim: bool
    ) -> tuple[array[int], Contents]:
        """Every UID of a mailbox now (a copy for the session), and what SELECT shows (``claim``:
        the \\Recent messages become the caller's); a watcher added before the next await hears of
        later changes."""
        known = self.known_contents(account, box, claim)
        if known is not None:
            return known
        generation = box.generation
        box.opening += 1
        try:
            contents = await self._db.run(
                messages.mailbox_contents, box.id, claim=claim, listed=box.listing is None
            )
        finally:
            box.opening -= 1
        if contents.messages is not None:
            # Changes whose results came back before this read are in it; later ones follow it.
            box.listing = contents.messages
            contents = replace(contents, messages=None)
        assert box.listing is not None
        if contents.claimed is not None:
            box.changed()
        elif generation == box.generation:
            box.contents = contents
        account.selecting(box)
        return box.listing.uids(), contents

    def known_contents(
        self, account: UserMailboxes, box: MailboxState, claim: bool
    ) -> tuple[array[int], Contents] | None:
        """What :meth:`contents` answers from memory, or None if it needs the store: nothing
        changed since it was read, and nothing to claim."""
        known = box.contents
        if known is not None and box.listing is not None and not (claim and known.recent):
            account.selecting(box)
            return box.listing.uids(), known
        return None

    async def counts(self, box: MailboxState) -> Counts:
        """Message counts for STATUS (from memory when nothing changed since they were read)."""
        if box.counts is None:
            generation = box.generation
            counts = await self._db.run(messages.mailbox_counts, box.id)
            if generation != box.generation:
                return counts
            box.counts = counts
        return box.counts

    async def fetch(
        self,
        box: MailboxState,
        uids: Sequence[int],
        *,
        bodies: bool,
        max_bytes: int | None = None,
        headers_only: bool = False,
    ) -> list[StoredMessage]:
        """The stored messages with these UIDs (bodies only if asked for, up to ``max_bytes``;
        only their header sections if ``headers_only``)."""
        return await self._db.run(
            messages.load_messages,
            box.id,
            uids,
            bodies=bodies,
            max_bytes=max_bytes,
            headers_only=headers_only,
        )

    async def summaries(
        self, box: MailboxState, low: int, high: int, *, details: bool, headers: bool
    ) -> list[tuple[Any, ...]]:
        """(uid, flag bits, keywords[, internaldate, size[, header section]]) of the messages with
        UIDs ``low``..``high`` (store.messages.load_summaries)."""
        return await self._db.run(
            messages.load_summaries, box.id, low, high, details=details, headers=headers
        )

    async def search(self, box: MailboxState, term: search.Term, max_uid: int) -> array[int]:
        """UIDs up to ``max_uid`` of the messages a search term matches."""
        return await self._db.run(search.matching_uids, box.id, term, max_uid)

    async def search_text(self, box: MailboxState, term: Term, max_uid: int) -> str:
        """The same UIDs as :meth:`search`, space separated (UID SEARCH's answer)."""
        return await self._db.run(search.matching_text, box.id, term, max_uid)

    async def store_flags(
        self, box: MailboxState, uids: Sequence[int], flags: Iterable[str], mode: int, origin: object
    ) -> list[messages.FlagUpdate]:
        """Add (mode 1), remove (-1) or replace (0) flags; watchers other than ``origin`` hear of changes."""
        updates = await self._db.run(messages.store_flags, box.id, uids, list(flags), mode)
        box.flags_changed({update.uid: update.flags for update in updates if update.changed}, origin)
        return updates

    async def expunge(self, box: MailboxState, uids: Sequence[int] | None, origin: object) -> list[int]:
        """Remove messages flagged ``\\Deleted`` (among ``uids`` if given); their UIDs, ascending."""
        gone = await self._db.run(messages.expunge, box.id, uids)
        box.expunged(gone, origin)
        return gone

    async def copy(
        self, box: MailboxState, uids: Sequence[int], account: UserMailboxes, target: str
    ) -> Transferred:
        """Copy messages into another mailbox of the same user."""
        copied = await self._db.run(messages.copy_messages, box.id, uids, account.user, target)
        self._added(account.user, copied.mailbox_id, copied.target, copied.flags)
        return copied

    async def move(
        self, box: MailboxState, uids: Sequence[int], account: UserMailboxes, target: str, origin: object
    ) -> Transferred:
        """Move messages into another mailbox of the same user (watchers but ``origin`` hear of it)."""
        moved = await self._db.run(messages.move_messages, box.id, uids, account.user, target)
        box.expunged(moved.source, origin)
        self._added(account.user, moved.mailbox_id, moved.target, moved.flags)
        return moved
