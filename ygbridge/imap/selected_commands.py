"""Commands of the selected state (RFC 3501 6.4, UIDPLUS, MOVE, UNSELECT) over the store.

Message sets are resolved against the session's UID array and worked through in batches, so
a command over a 50,000-message mailbox holds one batch of messages at a time.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import replace
from itertools import islice

from ygbridge.errors import BadCommand, MailboxError
from ygbridge.imap.fetch import (
    fetch_response,
    flags_list,
    flags_only,
    listed_responses,
    needs_body,
    needs_header_only,
    sets_seen,
    summary_query,
    summary_responses,
    wants_headers,
)
from ygbridge.imap.fetchitems import FetchItem, parse_fetch_items
from ygbridge.imap.message import ImapMessage
from ygbridge.imap.protocol import SELECTED, ImapProtocol, command
from ygbridge.imap.search import parse_search
from ygbridge.imap.sequence import uid_set
from ygbridge.imap.session import SelectedMailbox
from ygbridge.imap.wire import Parser, SequenceSet
from ygbridge.store.search import Term

#: Messages per round trip to the database during FETCH and STORE.
BATCH = 200
#: Messages per round trip when FETCH wants only their header sections.
HEADER_BATCH = 1000
#: Messages per round trip when FETCH wants only flags, UIDs, sizes and dates.
SUMMARY_BATCH = 5000
#: Message bytes per round trip when FETCH wants bodies.
FETCH_BYTES = 1 << 20
_UID_COMMANDS = {b"COPY", b"FETCH", b"STORE", b"SEARCH", b"MOVE", b"EXPUNGE"}


class SelectedCommands(ImapProtocol):
    """FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, their UID forms, CLOSE and UNSELECT."""

    def _selected(self, writing: bool = False) -> SelectedMailbox:
        assert self.mbox is not None and self.account is not None
        if writing and not self.mbox.writeable:
            raise MailboxError("the mailbox is open read-only")
        return self.mbox

    def _uids(self, ids: SequenceSet, uid: bool) -> array[int]:
        seqs = self._selected().seqs
        found = array("Q")
        for span in seqs.spans(ids, uid):
            found.extend(seqs.uids(span))
        return found

    def _sequence_set(self, args: Parser) -> SequenceSet:
        return args.sequence_set(self.limits.sequence_ranges)

    @command(*SELECTED)
    def do_UID(self, tag: bytes, args: Parser) -> None:
        name = args.atom("command after UID").upper()
        if name not in _UID_COMMANDS:
            raise BadCommand(f"UID {name.decode('ascii', 'replace')} is not a command")
        self.run_command(tag, name, args, uid=True)

    # FETCH

    @command(*SELECTED)
    def do_FETCH(self, tag: bytes, args: Parser) -> None:
        ids = self._sequence_set(args)
        args.sp()
        query = parse_fetch_items(args)
        args.end()
        self.run(tag, self._fetch(ids, query, self._uid))

    async def _fetch(self, ids: SequenceSet, query: list[FetchItem], uid: bool) -> bytes:
        view = self._selected()
        spans = view.seqs.spans(ids, uid)
        if summary_query(query):
            await self._fetch_summaries(view, spans, query, uid)
            return b"FETCH completed"
        for uids in view.seqs.batches(spans, HEADER_BATCH if needs_header_only(query) else BATCH):
            await self.drained()
            await self._fetch_batch(view, uids, query, uid)
        return b"FETCH completed"

    async def _fetch_summaries(
        self, view: SelectedMailbox, spans: list[range], query: list[FetchItem], uid: bool
    ) -> None:
        """FETCH of flags, UIDs, sizes, dates and header sections: rows read by UID range, a batch
        at a time (SUMMARY_BATCH, or HEADER_BATCH with header sections); UIDs and flags alone
        from the mailbox's listing in memory, when it has one."""
        assert self.account is not None
        details = any(item.name in ("RFC822.SIZE", "INTERNALDATE") for item in query)
        headers = wants_headers(query)
        batch = HEADER_BATCH if headers else SUMMARY_BATCH
        for span in spans:
            for start in range(span.start, span.stop, batch):
                await self.drained()
                uids = view.seqs.uids(range(start, min(span.stop, start + batch)))
                listing, recent = view.box.listing, view.recent.ranges
                if listing is not None and flags_only(query):
                    self.write(listed_responses(start + 1, uids, listing.columns(uids), query, uid, recent))
                    continue
                found = await self.account.mailhub.summaries(
                    view.box, uids[0], uids[-1], details=details, headers=headers
                )
                self.write(summary_responses(start + 1, uids, found, query, uid, recent))

    async def _fetch_batch(
        self, view: SelectedMailbox, uids: array[int], query: list[FetchItem], uid: bool
    ) -> None:
        """FETCH a batch; its bodies are read at most FETCH_BYTES at a time."""
        assert self.account is not None
        store = self.account.mailhub
        seen: set[int] = set()
        if view.writeable and sets_seen(query):
            updates = await store.store_flags(view.box, uids, ["\\Seen"], 1, origin=view)
            seen = {update.uid for update in updates if update.changed}
        bodies, headers = needs_body(query), needs_header_only(query)
        budget = FETCH_BYTES if bodies else None
        while uids:
            loaded = await store.fetch(view.box, uids, bodies=bodies, max_bytes=budget, headers_only=headers)
            for stored in loaded:
                seq = view.seqs.seq(stored.uid)
                assert seq is not None
                if stored.uid in view.recent:
                    stored = replace(stored, flags=view.flags(stored.uid, stored.flags))
                self.write(fetch_response(seq, ImapMessage(stored), query, uid, stored.uid in seen))
            uids = uids[bisect_right(uids, loaded[-1].uid) :] if loaded else array("Q")
            if uids:
                await self.drained()

    # STORE

    @command(*SELECTED)
    def do_STORE(self, tag: bytes, args: Parser) -> None:
        ids = self._sequence_set(args)
        args.sp()
        sign = 1 if args.skip(b"+") else -1 if args.skip(b"-") else 0
        args.expect(b"FLAGS", "FLAGS, +FLAGS or -FLAGS")
        silent = args.skip(b".SILENT")
        args.sp()
        flags = args.flags()
        args.end()
        self.run(tag, self._store(ids, flags, sign, self._uid, silent))

    async def _store(self, ids: SequenceSet, flags: list[str], sign: int, uid: bool, silent: bool) -> bytes:
        view = self._selected(writing=True)
        assert self.account is not None
        for uids in view.seqs.batches(view.seqs.spans(ids, uid), BATCH):
            await self.drained()
            updates = await self.account.mailhub.store_flags(view.box, uids, flags, sign, origin=view)
            for update in [] if silent else updates:
                seq = view.seqs.seq(update.uid)
                if seq is not None:
                    uid_item = b" UID %d" % update.uid if uid else b""
                    shown = flags_list(view.flags(update.uid, update.flags))
                    self.untagged(b"%d FETCH (FLAGS %b%b)" % (seq, shown, uid_item))
        return b"STORE completed"

    # SEARCH

    @command(*SELECTED)
    def do_SEARCH(self, tag: bytes, args: Parser) -> None:
        view = self._selected()
        term = parse_search(args, view.seqs, view.recent.term(), self.limits)
        self.run(tag, self._search(term, self._uid))

    async def _search(self, term: Term, uid: bool) -> bytes:
        view = self._selected()
        assert self.account is not None
        store = self.account.mailhub
        if uid:  # the store's text is the answer
            text = await store.search_text(view.box, term, view.seqs.last_uid)
            self.write(b"* SEARCH" + (b" " + text.encode("ascii") if text else b"") + b"\r\n")
            return b"SEARCH completed"
        found = await store.search(view.box, term, view.seqs.last_uid)
        seqs = (view.seqs.seq(found_uid) for found_uid in found)
        numbers = (seq for seq in seqs if seq is not None)
        self.write(b"* SEARCH")
        while chunk := list(islice(numbers, 5000)):  # a long answer is never held whole
            self.write((" " + " ".join(map(str, chunk))).encode("ascii"))
        self.write(b"\r\n")
        return b"SEARCH completed"

    # COPY, MOVE (RFC 6851) with COPYUID (RFC 4315)

    @command(*SELECTED)
    def do_COPY(self, tag: bytes, args: Parser) -> None:
        self._transfer_command(tag, args, move=False)

    @command(*SELECTED)
    def do_MOVE(self, tag: bytes, args: Parser) -> None:
        self._transfer_command(tag, args, move=True)

    def _transfer_command(self, tag: bytes, args: Parser, move: bool) -> None:
        ids = self._sequence_set(args)
        args.sp()
        target = args.mailbox()
        args.end()
        self.run(tag, self._transfer(ids, target, self._uid, move), trycreate=True)

    async def _transfer(self, ids: SequenceSet, target: str, uid: bool, move: bool) -> bytes:
        view = self._selected(writing=move)
        assert self.account is not None
        store, account, uids = self.account.mailhub, self.account.mailboxes, self._uids(ids, uid)
        if move:
            done = await store.move(view.box, uids, account, target, origin=view)
            view.expunged_here(done.source)
        else:
            done = await store.copy(view.box, uids, account, target)
        code = b""
        if done.source:
            code = b"[COPYUID %d %b %b] " % (done.uidvalidity, uid_set(done.source), uid_set(done.target))
        if move:  # COPYUID before the EXPUNGEs, which precede the tagged OK
            self.untagged(b"OK " + code + b"Moved")
            return b"MOVE completed"
        return code + b"COPY completed"

    # EXPUNGE, CLOSE, UNSELECT

    @command(*SELECTED)
    def do_EXPUNGE(self, tag: bytes, args: Parser) -> None:
        ids = self._sequence_set(args) if self._uid else None  # UIDPLUS: only its UID form takes a set
        args.end()
        self.run(tag, self._expunge(ids))

    async def _expunge(self, ids: SequenceSet | None) -> bytes:
        view = self._selected(writing=True)
        assert self.account is not None
        uids = None if ids is None else self._uids(ids, uid=True)
        view.expunged_here(await self.account.mailhub.expunge(view.box, uids, origin=view))
        return b"EXPUNGE completed"

    @command(*SELECTED)
    def do_CLOSE(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.run(tag, self._close())

    async def _close(self) -> bytes:
        """Expunge without reporting it, then leave the mailbox (RFC 3501 6.4.2)."""
        view = self._selected()
        assert self.account is not None
        if view.writeable:
            await self.account.mailhub.expunge(view.box, None, origin=view)
        self._close_mailbox()
        return b"CLOSE completed"

    @command(*SELECTED)
    def do_UNSELECT(self, tag: bytes, args: Parser) -> None:
        """Leave the mailbox without expunging (RFC 3691)."""
        args.end()
        self._close_mailbox()
        self.tagged(tag, b"OK", b"UNSELECT completed")
