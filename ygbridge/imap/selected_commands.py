"""Commands of the selected state (RFC 3501 6.4, UIDPLUS, MOVE, UNSELECT) over the store.

Message sets are resolved against the session's UID array and worked through in batches, so
a command over a 50,000-message mailbox holds one batch of messages at a time.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from itertools import islice
from typing import Any

from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server, MessageSet

from ygbridge.errors import MailboxError
from ygbridge.imap.base import CommandServer, flag_names, mailbox_name
from ygbridge.imap.fetch import fetch_response, flags_list, needs_body, sets_seen
from ygbridge.imap.flow import WriteGate
from ygbridge.imap.message import ImapMessage
from ygbridge.imap.search import parse_search
from ygbridge.imap.sequence import uid_set
from ygbridge.imap.session import SelectedMailbox

#: Messages per round trip to the database during FETCH and STORE.
BATCH = 200
#: Message bytes per round trip when FETCH wants bodies.
FETCH_BYTES = 1 << 20
_UID_COMMANDS = {b"COPY", b"FETCH", b"STORE", b"SEARCH", b"MOVE", b"EXPUNGE"}


class SelectedCommands(CommandServer):
    """FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, their UID forms, CLOSE and UNSELECT."""

    def _selected(self, writing: bool = False) -> SelectedMailbox:
        assert self.mbox is not None and self.account is not None
        if writing and not self.mbox.writeable:
            raise MailboxError("the mailbox is open read-only")
        return self.mbox

    def _uids(self, ids: MessageSet, uid: bool) -> array[int]:
        seqs = self._selected().seqs
        found = array("Q")
        for span in seqs.spans(ids, uid):
            found.extend(seqs.uids(span))
        return found

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> None:
        command = command.upper()
        if command not in _UID_COMMANDS:
            raise IllegalClientResponse(f"UID {command.decode('ascii', 'replace')} is not a command")
        if command == b"EXPUNGE":  # UIDPLUS: only its UID form takes a set
            messages, rest = self.arg_seqset(line)
            if rest:
                raise IllegalClientResponse("UID EXPUNGE takes one UID set")
            self._command, self._uid = command, True
            self.do_EXPUNGE(tag, messages)
        else:
            self.dispatchCommand(tag, command, line, uid=1)

    select_UID = (do_UID, IMAP4Server.arg_atom, IMAP4Server.arg_line)

    # FETCH

    def do_FETCH(self, tag: bytes, messages: MessageSet, query: list[Any], uid: int = 0) -> None:
        self._run(tag, self._fetch(messages, query, bool(uid)))

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, IMAP4Server.arg_fetchatt)

    async def _fetch(self, ids: MessageSet, query: list[Any], uid: bool) -> bytes:
        view = self._selected()
        gate = WriteGate()
        self.transport.registerProducer(gate, True)
        try:
            for uids in view.seqs.batches(view.seqs.spans(ids, uid), BATCH):
                await gate.wait()
                await self._fetch_batch(view, uids, query, uid)
        finally:
            self.transport.unregisterProducer()
        return b"FETCH completed"

    async def _fetch_batch(
        self, view: SelectedMailbox, uids: array[int], query: list[Any], uid: bool
    ) -> None:
        """FETCH a batch; its bodies are read at most FETCH_BYTES at a time."""
        assert self.account is not None
        store = self.account.mailstore
        seen: set[int] = set()
        if view.writeable and sets_seen(query):
            updates = await store.store_flags(view.box, uids, ["\\Seen"], 1, origin=view)
            seen = {update.uid for update in updates if update.changed}
        bodies = needs_body(query)
        budget = FETCH_BYTES if bodies else None
        while uids:
            loaded = await store.fetch(view.box, uids, bodies=bodies, max_bytes=budget)
            for stored in loaded:
                seq = view.seqs.seq(stored.uid)
                assert seq is not None
                self.transport.write(fetch_response(seq, ImapMessage(stored), query, uid, stored.uid in seen))
            uids = uids[bisect_right(uids, loaded[-1].uid) :] if loaded else array("Q")

    # STORE

    def do_STORE(
        self, tag: bytes, messages: MessageSet, mode: bytes, flags: list[bytes], uid: int = 0
    ) -> None:
        action, _, silent = mode.upper().partition(b".")
        if action not in (b"FLAGS", b"+FLAGS", b"-FLAGS") or silent not in (b"", b"SILENT"):
            raise IllegalClientResponse(f"unknown STORE data item {mode!r}")
        sign = {b"+": 1, b"-": -1}.get(action[:1], 0)
        self._run(tag, self._store(messages, flag_names(flags), sign, bool(uid), bool(silent)))

    select_STORE = (do_STORE, IMAP4Server.arg_seqset, IMAP4Server.arg_atom, IMAP4Server.arg_flaglist)

    async def _store(self, ids: MessageSet, flags: list[str], sign: int, uid: bool, silent: bool) -> bytes:
        view = self._selected(writing=True)
        assert self.account is not None
        for uids in view.seqs.batches(view.seqs.spans(ids, uid), BATCH):
            updates = await self.account.mailstore.store_flags(view.box, uids, flags, sign, origin=view)
            for update in [] if silent else updates:
                uid_item = b" UID %d" % update.uid if uid else b""
                flags_item = flags_list(update.flags)
                self.sendUntaggedResponse(
                    b"%d FETCH (FLAGS %b%b)" % (view.seqs.seq(update.uid), flags_item, uid_item)
                )
        return b"STORE completed"

    # SEARCH

    def do_SEARCH(self, tag: bytes, charset: bytes | None, query: list[Any], uid: int = 0) -> None:
        self._run(tag, self._search(charset, query, bool(uid)))

    select_SEARCH = (do_SEARCH, IMAP4Server.opt_charset, CommandServer.arg_searchkeys)

    async def _search(self, charset: bytes | None, query: list[Any], uid: bool) -> bytes:
        view = self._selected()
        assert self.account is not None
        term = parse_search(query, charset, view.seqs)
        found = await self.account.mailstore.search(view.box, term, view.seqs.last_uid)
        numbers = iter(found if uid else map(view.seqs.seq, found))
        self.transport.write(b"* SEARCH")
        while chunk := list(islice(numbers, 1000)):  # a long answer is never held whole
            self.transport.write(b"".join(b" %d" % number for number in chunk))
        self.transport.write(b"\r\n")
        return b"SEARCH completed"

    # COPY, MOVE (RFC 6851) with COPYUID (RFC 4315)

    def do_COPY(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        self._run(tag, self._transfer(messages, mailbox_name(mailbox), bool(uid), move=False), trycreate=True)

    def do_MOVE(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        self._run(tag, self._transfer(messages, mailbox_name(mailbox), bool(uid), move=True), trycreate=True)

    select_COPY = (do_COPY, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)
    select_MOVE = (do_MOVE, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)

    async def _transfer(self, ids: MessageSet, target: str, uid: bool, move: bool) -> bytes:
        view = self._selected(writing=move)
        assert self.account is not None
        store, account, uids = self.account.mailstore, self.account.mailboxes, self._uids(ids, uid)
        if move:
            done = await store.move(view.box, uids, account, target, origin=view)
            view.expunged_here(done.source)
        else:
            done = await store.copy(view.box, uids, account, target)
        code = b""
        if done.source:
            code = b"[COPYUID %d %b %b] " % (done.uidvalidity, uid_set(done.source), uid_set(done.target))
        if move:  # COPYUID before the EXPUNGEs, which precede the tagged OK
            self.sendPositiveResponse(None, code + b"Moved")
            return b"MOVE completed"
        return code + b"COPY completed"

    # EXPUNGE, CLOSE, UNSELECT

    def do_EXPUNGE(self, tag: bytes, messages: MessageSet | None = None) -> None:
        self._run(tag, self._expunge(messages))

    select_EXPUNGE = (do_EXPUNGE,)

    async def _expunge(self, ids: MessageSet | None) -> bytes:
        view = self._selected(writing=True)
        assert self.account is not None
        uids = None if ids is None else self._uids(ids, uid=True)
        view.expunged_here(await self.account.mailstore.expunge(view.box, uids, origin=view))
        return b"EXPUNGE completed"

    def do_CLOSE(self, tag: bytes) -> None:
        self._run(tag, self._close())

    select_CLOSE = (do_CLOSE,)

    async def _close(self) -> bytes:
        """Expunge without reporting it, then leave the mailbox (RFC 3501 6.4.2)."""
        view = self._selected()
        assert self.account is not None
        if view.writeable:
            await self.account.mailstore.expunge(view.box, None, origin=view)
        self._close_mailbox()
        return b"CLOSE completed"

    def do_UNSELECT(self, tag: bytes) -> None:
        """Leave the mailbox without expunging (RFC 3691)."""
        self._close_mailbox()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)
