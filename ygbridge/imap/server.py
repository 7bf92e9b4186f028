"""The IMAP server: twisted.mail's IMAP4Server with the gaps ygbridge's clients hit closed.

Over the base class: SELECT reports UIDNEXT and PERMANENTFLAGS; FETCH serves raw header and
body bytes (Twisted's _formatHeaders re-cases and breaks them), sets \\Seen and reads the
database in batches; commands whose work is deferred (CREATE, APPEND, STORE...) answer when
it is done; IDLE wants DONE; mailbox listeners go when the connection does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.mail.imap4 import (
    IllegalClientResponse,
    IllegalMailboxEncoding,
    IMAP4Server,
    MessageSet,
    PLAINCredentials,
    collapseNestedLists,
    getEnvelope,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ygbridge.errors import MailboxError, NoSuchMailbox
from ygbridge.imap.mailbox import ISessionListener, SessionMailbox
from ygbridge.imap.message import ImapMessage, body_structure, parse_date_time

log = structlog.get_logger(__name__)

#: Messages read from the database per round trip during FETCH.
FETCH_BATCH = 100
#: FETCH items that need the message bytes.
_NEEDS_BODY = {"body", "bodystructure", "envelope", "rfc822", "rfc822header", "rfc822text"}


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n%b" % (len(data), data)


def _wire(value: Any) -> Any:
    """A structure for collapseNestedLists with str leaves turned back into their raw bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple)):
        return [_wire(item) for item in value]
    return value


def _mailbox_name(name: bytes) -> str:
    try:
        return name.decode("imap4-utf-7")
    except UnicodeDecodeError:
        raise IllegalMailboxEncoding(name) from None


def _has_section(part: Any) -> bool:
    return bool(part.empty or part.header or part.text or part.mime)


def _sets_seen(part: Any) -> bool:
    if part.type == "body":
        return _has_section(part) and not part.peek
    return part.type in ("rfc822", "rfc822text")


@implementer(ISessionListener)
class ImapServer(IMAP4Server):
    """One IMAP connection; ``clock`` drives its idle timeout."""

    IDENT = b"ygbridge IMAP4rev1 ready"

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__(chal={b"PLAIN": PLAINCredentials})
        self._clock = clock
        self._idle_tag: bytes | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        return self._clock.callLater(period, func)  # TimeoutMixin would use the global reactor

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.mbox is not None:  # Twisted would leave it notifying a dead session
            self.mbox.removeListener(self)
            self.mbox.close()
            self.mbox = None
        super().connectionLost(reason)

    def sendContinuationRequest(self, msg: bytes | None = b"Ready for additional command text") -> None:
        self.sendLine(b"+ " + (msg or b""))  # RFC 3501 wants the space even with no text

    def _run(self, tag: bytes, work: Coroutine[Any, Any, bytes], trycreate: bool = False) -> Deferred[None]:
        """Run a command's coroutine; it returns the text of the tagged OK."""
        done = Deferred.fromCoroutine(work)
        return done.addCallbacks(
            lambda text: self.sendPositiveResponse(tag, text), self._failed, errbackArgs=(tag, trycreate)
        )

    def _failed(self, failure: Failure, tag: bytes, trycreate: bool) -> None:
        text = str(failure.value).encode("ascii", "backslashreplace")
        if failure.check(NoSuchMailbox) and trycreate:
            self.sendNegativeResponse(tag, b"[TRYCREATE] " + text)
        elif failure.check(MailboxError):
            self.sendNegativeResponse(tag, text)
        elif failure.check(IllegalClientResponse):
            self.sendBadResponse(tag, b"Illegal syntax: " + text)
        else:
            log.error("imap.command_failed", error=repr(failure.value), traceback=failure.getTraceback())
            self.sendBadResponse(tag, b"Server error, please try again later")

    async def _when_done(self, work: Awaitable[Any], text: bytes) -> bytes:
        await work
        return text

    # SELECT / EXAMINE: called by IMAP4Server._selectWork with the account's select() result

    def _cbSelectWork(self, mbox: SessionMailbox | None, cmdName: bytes, tag: bytes) -> None:
        if mbox is None:
            self.sendNegativeResponse(tag, b"No such mailbox")
            return
        flags = " ".join(mbox.getFlags()).encode("ascii")
        permanent = flags + b" \\*" if mbox.isWriteable() else b""
        self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
        self.sendUntaggedResponse(b"%d EXISTS" % mbox.getMessageCount())
        self.sendUntaggedResponse(b"%d RECENT" % mbox.getRecentCount())
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        self.sendPositiveResponse(None, b"[UIDNEXT %d] Predicted next UID" % mbox.getUIDNext())
        self.sendPositiveResponse(None, b"[PERMANENTFLAGS (" + permanent + b")] Limited")
        mbox.addListener(self)
        self.mbox = mbox
        self.state = "select"
        mode = b"[READ-WRITE]" if mbox.isWriteable() else b"[READ-ONLY]"
        self.sendPositiveResponse(tag, mode + b" " + cmdName + b" completed")

    # FETCH

    def do_FETCH(self, tag: bytes, messages: MessageSet, query: list[Any], uid: int = 0) -> None:
        self.blocked = []  # later commands wait until this one is answered
        self._run(tag, self._fetch(messages, query, bool(uid))).addBoth(lambda _: self._unblock())

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, IMAP4Server.arg_fetchatt)

    async def _fetch(self, messages: MessageSet, query: list[Any], uid: bool) -> bytes:
        mbox: SessionMailbox = self.mbox
        items = mbox.resolve(messages, uid)
        bodies = any(part.type in _NEEDS_BODY for part in query)
        mark_seen = mbox.isWriteable() and any(_sets_seen(part) for part in query)
        for start in range(0, len(items), FETCH_BATCH):
            batch = items[start : start + FETCH_BATCH]
            marked: set[int] = set()
            unseen = [(seq, u) for seq, u in batch if "\\Seen" not in mbox.flags(u)] if mark_seen else []
            if unseen:
                marked = set(await mbox.set_flags(unseen, ["\\Seen"], 1))
            for seq, message in await mbox.load(batch, bodies=bodies):
                self.transport.write(self._fetch_response(seq, message, query, uid, seq in marked))
        return b"FETCH completed"

    def _fetch_response(
        self, seq: int, message: ImapMessage, query: Sequence[Any], uid: bool, seen_set: bool
    ) -> bytes:
        items = [self._fetch_item(seq, part, message) for part in query]
        types = {part.type for part in query}
        if uid and "uid" not in types:
            items.append(b"UID %d" % message.getUID())
        if seen_set and "flags" not in types:
            items.append(self._spew("flags", seq, message))
        return b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))

    def _fetch_item(self, seq: int, part: Any, message: ImapMessage) -> bytes:
        kind = part.type
        if kind == "body":
            return self._body_item(part, message)
        if kind == "rfc822":
            return b"RFC822 " + _literal(message.entity.raw)
        if kind == "rfc822header":
            return b"RFC822.HEADER " + _literal(message.entity.header)
        if kind == "rfc822text":
            return b"RFC822.TEXT " + _literal(message.entity.body)
        if kind == "envelope":
            return b"ENVELOPE " + collapseNestedLists([_wire(getEnvelope(message))])
        if kind == "bodystructure":
            return b"BODYSTRUCTURE " + self._structure(message, extended=True)
        return self._spew(kind, seq, message)  # flags, uid, internaldate, rfc822size

    def _spew(self, kind: str, seq: int, message: ImapMessage) -> bytes:
        """A FETCH item written by Twisted's own ``spew_*`` method."""
        written: list[bytes] = []
        getattr(self, "spew_" + kind)(seq, message, written.append, None)
        return b"".join(written)

    def _body_item(self, part: Any, message: ImapMessage) -> bytes:
        if not _has_section(part):
            return b"BODY " + self._structure(message, extended=False)
        fields: list[bytes] = []
        if part.mime:
            kind = "MIME"
        elif part.text:
            kind = "TEXT"
        elif part.header:
            fields = list(part.header.fields or ())
            kind = "HEADER" if not fields else "HEADER.FIELDS.NOT" if part.header.negate else "HEADER.FIELDS"
        else:
            kind = ""
        data = message.entity.section(part.part, kind, fields)
        section = ".".join([*(str(n + 1) for n in part.part), *([kind] if kind else [])]).encode("ascii")
        if fields:
            section += b" (" + b" ".join(fields) + b")"
        label = b"BODY[" + section + b"]"
        if part.partialBegin is not None:
            label += b"<%d>" % part.partialBegin
            data = data and data[part.partialBegin : part.partialBegin + part.partialLength]
        return label + b" " + (b"NIL" if data is None else _literal(data))

    def _structure(self, message: ImapMessage, extended: bool) -> bytes:
        return collapseNestedLists([_wire(body_structure(message.entity, extended))])

    # SEARCH (Twisted's own fails on most text and date keys)

    def do_SEARCH(self, tag: bytes, charset: bytes | None, query: list[Any], uid: int = 0) -> None:
        self._run(tag, self._search(query, bool(uid)))

    select_SEARCH = (do_SEARCH, IMAP4Server.opt_charset, IMAP4Server.arg_searchkeys)

    async def _search(self, query: list[Any], uid: bool) -> bytes:
        mbox: SessionMailbox = self.mbox
        found = [mbox.getUID(seq) if uid else seq for seq in await mbox.search(query, uid)]
        self.sendUntaggedResponse(b" ".join([b"SEARCH", *(b"%d" % number for number in found)]))
        return b"SEARCH completed"

    # STORE, COPY, APPEND

    def do_STORE(
        self, tag: bytes, messages: MessageSet, mode: bytes, flags: list[bytes], uid: int = 0
    ) -> None:
        action, _, silent = mode.upper().partition(b".")
        if action not in (b"FLAGS", b"+FLAGS", b"-FLAGS") or silent not in (b"", b"SILENT"):
            raise IllegalClientResponse(f"unknown STORE data item {mode!r}")
        sign = {b"+": 1, b"-": -1}.get(action[:1], 0)
        self._run(
            tag, self._store(messages, [f.decode("ascii") for f in flags], sign, bool(uid), bool(silent))
        )

    select_STORE = (do_STORE, IMAP4Server.arg_seqset, IMAP4Server.arg_atom, IMAP4Server.arg_flaglist)

    async def _store(
        self, messages: MessageSet, flags: list[str], sign: int, uid: bool, silent: bool
    ) -> bytes:
        mbox: SessionMailbox = self.mbox
        result = await mbox.set_flags(mbox.resolve(messages, uid), flags, sign)
        for seq, value in [] if silent else result.items():
            uid_item = b" UID %d" % mbox.getUID(seq) if uid else b""
            self.sendUntaggedResponse(b"%d FETCH (FLAGS (%b)%b)" % (seq, " ".join(value).encode(), uid_item))
        return b"STORE completed"

    def do_COPY(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        mbox: SessionMailbox = self.mbox
        copied = mbox.copy_to(mbox.resolve(messages, bool(uid)), _mailbox_name(mailbox))
        self._run(tag, self._when_done(copied, b"COPY completed"), trycreate=True)

    select_COPY = (do_COPY, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)

    def do_APPEND(
        self, tag: bytes, mailbox: bytes, flags: list[bytes] | None, date: bytes | None, message: Any
    ) -> None:
        try:
            when = None if date is None else parse_date_time(date)
        except ValueError as exc:
            raise IllegalClientResponse(str(exc)) from None
        names = [flag.decode("ascii") for flag in flags or ()]
        appended = self.account.append(_mailbox_name(mailbox), message.read(), names, when)
        self._run(tag, self._when_done(appended, b"APPEND completed"), trycreate=True)

    auth_APPEND = (
        do_APPEND,
        IMAP4Server.arg_astring,
        IMAP4Server.opt_plist,
        IMAP4Server.opt_datetime,
        IMAP4Server.arg_literal,
    )
    select_APPEND = auth_APPEND

    # Mailbox management: the account's methods return Deferreds, which the base ignores

    def do_CREATE(self, tag: bytes, name: bytes) -> None:
        self._run(tag, self._when_done(self.account.create(_mailbox_name(name)), b"CREATE completed"))

    def do_DELETE(self, tag: bytes, name: bytes) -> None:
        self._run(tag, self._when_done(self.account.delete(_mailbox_name(name)), b"DELETE completed"))

    def do_RENAME(self, tag: bytes, old: bytes, new: bytes) -> None:
        renamed = self.account.rename(_mailbox_name(old), _mailbox_name(new))
        self._run(tag, self._when_done(renamed, b"RENAME completed"))

    def do_SUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        self._run(tag, self._when_done(self.account.subscribe(_mailbox_name(name)), b"SUBSCRIBE completed"))

    def do_UNSUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        unsubscribed = self.account.unsubscribe(_mailbox_name(name))
        self._run(tag, self._when_done(unsubscribed, b"UNSUBSCRIBE completed"))

    auth_CREATE = select_CREATE = (do_CREATE, IMAP4Server.arg_finalastring)
    auth_DELETE = select_DELETE = (do_DELETE, IMAP4Server.arg_finalastring)
    auth_RENAME = select_RENAME = (do_RENAME, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, IMAP4Server.arg_finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, IMAP4Server.arg_finalastring)

    # NOOP and IDLE report what other sessions expunged

    def _report_expunges(self) -> None:
        if self.mbox is not None:
            for seq in self.mbox.take_expunged():
                self.sendUntaggedResponse(b"%d EXPUNGE" % seq)

    def expungesPending(self) -> None:
        if self.parseState == "idle":
            self._report_expunges()

    def do_NOOP(self, tag: bytes) -> None:
        self._report_expunges()
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = logout_NOOP = (do_NOOP,)

    def do_IDLE(self, tag: bytes) -> None:
        self._report_expunges()
        self.sendContinuationRequest(b"idling")
        self._idle_tag = tag
        self.parseState = "idle"

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line: bytes) -> None:
        self.parseState = "command"
        tag, self._idle_tag = self._idle_tag, None
        if line.strip().upper() == b"DONE":
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(tag, b"Expected DONE; IDLE terminated")


class ImapFactory(ServerFactory):
    """Makes ImapServer connections that log in through ``portal`` (IAccount avatars)."""

    def __init__(self, portal: Portal, clock: IReactorTime) -> None:
        self.portal = portal
        self.clock = clock

    def buildProtocol(self, addr: IAddress) -> ImapServer:
        server = ImapServer(self.clock)
        server.portal = self.portal
        server.factory = self
        return server
