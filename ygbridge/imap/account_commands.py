"""Commands of the authenticated state (RFC 3501 6.3) over the logged-in ImapAccount.

SELECT and EXAMINE read the mailbox's counters and UID array (kept in memory while the user has
sessions), SELECT claiming its \\Recent messages; STATUS reads the counters. Both answer at once,
without the DB thread, when memory holds what they show. APPEND answers with APPENDUID (RFC 4315).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ygbridge.errors import BadCommand, MessageTooBig
from ygbridge.imap.mailbox import ImapAccount
from ygbridge.imap.protocol import LOGGED_IN, SELECTED, ImapProtocol, command
from ygbridge.imap.session import SelectedMailbox
from ygbridge.imap.wire import Parser, encode_mailbox
from ygbridge.store.flags import SYSTEM_FLAGS
from ygbridge.store.mailboxes import DELIMITER
from ygbridge.store.messages import Contents, Counts

_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")


async def _done(work: Awaitable[Any], text: bytes) -> bytes:
    await work
    return text


class AccountCommands(ImapProtocol):
    """SELECT, EXAMINE, STATUS, APPEND, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, NAMESPACE."""

    @property
    def _account(self) -> ImapAccount:
        assert self.account is not None
        return self.account

    # SELECT, EXAMINE

    @command(*LOGGED_IN)
    def do_SELECT(self, tag: bytes, args: Parser) -> None:
        self._select(tag, args, writeable=True)

    @command(*LOGGED_IN)
    def do_EXAMINE(self, tag: bytes, args: Parser) -> None:
        self._select(tag, args, writeable=False)

    def _select(self, tag: bytes, args: Parser, writeable: bool) -> None:
        name = args.mailbox()
        args.end()
        self._close_mailbox()  # even if the new one cannot be opened (RFC 3501 6.3.1)
        known = self._account.select_now(name, writeable, self._changes_arrived)
        if known is None:
            self.run(tag, self._open(name, writeable))
        else:
            self.tagged(tag, b"OK", self._opened(*known, writeable))

    async def _open(self, name: str, writeable: bool) -> bytes:
        view, contents = await self._account.select(name, writeable, self._changes_arrived)
        if self._gone:
            view.close()
            return b""
        return self._opened(view, contents, writeable)

    def _opened(self, view: SelectedMailbox, contents: Contents, writeable: bool) -> bytes:
        """Select ``view``: its untagged responses, and the tagged answer's text."""
        self.mbox, self.state = view, "select"
        flags = " ".join([*SYSTEM_FLAGS, *sorted(contents.keywords)]).encode("utf-8")
        self.untagged(b"FLAGS (%b)" % flags)
        self.untagged(b"%d EXISTS" % len(view.seqs))
        recent = view.recent.count(view.seqs) if writeable else contents.recent
        self.untagged(b"%d RECENT" % recent)
        first_unseen = None if contents.first_unseen is None else view.seqs.seq(contents.first_unseen)
        if first_unseen is not None:
            self.untagged(b"OK [UNSEEN %d] First unseen" % first_unseen)
        self.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % contents.uidvalidity)
        self.untagged(b"OK [UIDNEXT %d] Predicted next UID" % contents.uidnext)
        permanent = flags + b" \\*" if writeable else b""
        self.untagged(b"OK [PERMANENTFLAGS (%b)] Limited" % permanent)
        if writeable:
            return b"[READ-WRITE] SELECT completed"
        return b"[READ-ONLY] EXAMINE completed"

    # STATUS, APPEND

    @command(*LOGGED_IN)
    def do_STATUS(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.sp()
        items = [
            item.upper() for item in args.parenthesised(lambda: args.atom("STATUS item"), "STATUS items")
        ]
        args.end()
        unknown = [item for item in items if item not in _STATUS_ITEMS]
        if unknown or not items:
            raise BadCommand("STATUS items are " + " ".join(item.decode("ascii") for item in _STATUS_ITEMS))
        counts = self._account.status_now(name)
        if counts is None:
            self.run(tag, self._status(name, items))
        else:
            self.tagged(tag, b"OK", self._counted(name, items, counts))

    async def _status(self, name: str, items: list[bytes]) -> bytes:
        return self._counted(name, items, await self._account.status(name))

    def _counted(self, name: str, items: list[bytes], counts: Counts) -> bytes:
        """STATUS's untagged response, and the tagged answer's text."""
        values = {
            b"MESSAGES": counts.messages,
            b"RECENT": counts.recent,
            b"UIDNEXT": counts.uidnext,
            b"UIDVALIDITY": counts.uidvalidity,
            b"UNSEEN": counts.unseen,
        }
        answer = b" ".join(b"%b %d" % (item, values[item]) for item in items)
        self.untagged(b"STATUS %b (%b)" % (encode_mailbox(name), answer))
        return b"STATUS completed"

    @command(*LOGGED_IN)
    def do_APPEND(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.sp()
        flags: list[str] = []
        if args.peek(b"("):
            flags = args.flag_list()
            args.sp()
        when = None
        if args.peek(b'"'):
            when = args.date_time()
            args.sp()
        if not args.peek(b"{"):
            raise BadCommand("APPEND wants the message as a literal")
        body = args.literal()
        args.end()
        if len(body) > self.max_message_size:
            raise MessageTooBig(self.max_message_size)
        self.run(tag, self._append(name, body, flags, when), trycreate=True)

    async def _append(self, name: str, body: bytes, flags: list[str], when: float | None) -> bytes:
        added = await self._account.append(name, body, flags, when)
        return b"[APPENDUID %d %d] APPEND completed" % (added.uidvalidity, added.uid)

    # Mailbox management

    @command(*LOGGED_IN)
    def do_CREATE(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.end()
        self.run(tag, _done(self._account.create(name), b"CREATE completed"))

    @command(*LOGGED_IN)
    def do_DELETE(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.end()
        self.run(tag, _done(self._account.delete(name), b"DELETE completed"))

    @command(*LOGGED_IN)
    def do_RENAME(self, tag: bytes, args: Parser) -> None:
        old = args.mailbox()
        args.sp()
        new = args.mailbox()
        args.end()
        self.run(tag, _done(self._account.rename(old, new), b"RENAME completed"))

    @command(*LOGGED_IN)
    def do_SUBSCRIBE(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.end()
        self.run(tag, _done(self._account.subscribe(name, True), b"SUBSCRIBE completed"))

    @command(*LOGGED_IN)
    def do_UNSUBSCRIBE(self, tag: bytes, args: Parser) -> None:
        name = args.mailbox()
        args.end()
        self.run(tag, _done(self._account.subscribe(name, False), b"UNSUBSCRIBE completed"))

    # LIST, LSUB, NAMESPACE

    @command(*LOGGED_IN)
    def do_LIST(self, tag: bytes, args: Parser) -> None:
        self._list(tag, args, b"LIST")

    @command(*LOGGED_IN)
    def do_LSUB(self, tag: bytes, args: Parser) -> None:
        self._list(tag, args, b"LSUB")

    def _list(self, tag: bytes, args: Parser, which: bytes) -> None:
        reference = args.mailbox()
        args.sp()
        pattern = args.list_mailbox()
        args.end()
        account = self._account
        delimiter = b'"' + DELIMITER.encode("ascii") + b'"'
        for name, listing in account.listMailboxes(reference, pattern):
            if which == b"LIST" or account.isSubscribed(name):
                attributes = " ".join(listing.getFlags()).encode("ascii")
                self.untagged(b"%b (%b) %b %b" % (which, attributes, delimiter, encode_mailbox(name)))
        self.tagged(tag, b"OK", which + b" completed")

    @command(*LOGGED_IN)
    def do_NAMESPACE(self, tag: bytes, args: Parser) -> None:
        """One personal namespace, no shared or other users' ones (RFC 2342)."""
        args.end()
        self.untagged(b'NAMESPACE (("" "%b")) NIL NIL' % DELIMITER.encode("ascii"))
        self.tagged(tag, b"OK", b"NAMESPACE completed")

    @command(*SELECTED)
    def do_CHECK(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.tagged(tag, b"OK", b"CHECK completed")
