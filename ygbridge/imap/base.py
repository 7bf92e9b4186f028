"""The command machinery under ygbridge's IMAP server.

Over twisted.mail's IMAP4Server: a command whose work is deferred is answered before the next
one is read, so pipelined commands are answered in order (Twisted issue 9282); literals may be
non-synchronizing (RFC 7888 LITERAL+), also inside SEARCH; changes other sessions made to the
selected mailbox are reported before each tagged response, EXPUNGE only where RFC 3501 7.4.1
allows it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Coroutine
from typing import Any

import structlog
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.mail.imap4 import (
    IllegalClientResponse,
    IllegalMailboxEncoding,
    IllegalOperation,
    IMAP4Server,
    LiteralFile,
    LiteralString,
    MismatchedNesting,
    parseNestedParens,
)
from twisted.python.failure import Failure

from ygbridge.errors import MailboxError, NoSuchMailbox
from ygbridge.imap.mailbox import ImapAccount
from ygbridge.imap.session import SelectedMailbox

log = structlog.get_logger(__name__)

#: A literal announced at the end of a command line: {size} or, non-synchronizing, {size+}.
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\Z")
#: Commands during which EXPUNGE must not be sent (RFC 3501 7.4.1); their UID forms may.
_NO_EXPUNGE = {b"FETCH", b"STORE", b"SEARCH"}


def mailbox_name(name: bytes) -> str:
    """A mailbox name from the wire (modified UTF-7, RFC 3501 5.1.3)."""
    try:
        return name.decode("imap4-utf-7")
    except UnicodeDecodeError:
        raise IllegalMailboxEncoding(name) from None


def flag_names(flags: list[bytes]) -> list[str]:
    """Flags from the wire (atoms: ASCII)."""
    try:
        return [flag.decode("ascii") for flag in flags]
    except UnicodeDecodeError:
        raise IllegalClientResponse("flags are ASCII atoms") from None


class CommandServer(IMAP4Server):
    """IMAP4Server with one command at a time, LITERAL+, and change reports."""

    #: Longest command line accepted (long UID sets are common).
    MAX_LENGTH = 65536

    account: ImapAccount | None
    mbox: SelectedMailbox | None
    _command = b""
    _uid = False
    _gone = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._close_mailbox()  # Twisted would leave it notifying a dead session
        super().connectionLost(reason)

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes | None, uid: int | None = None) -> None:
        self._command, self._uid = cmd, bool(uid)
        try:
            super().dispatchCommand(tag, cmd, rest, uid)
        except (IllegalClientResponse, IllegalOperation, IllegalMailboxEncoding):
            raise  # IMAP4Server answers these
        except Exception:  # the client must still get a tagged answer
            self._failed(Failure(), tag, trycreate=False)

    def sendContinuationRequest(self, msg: bytes | None = b"Ready for additional command text") -> None:
        self.sendLine(b"+ " + (msg or b""))  # RFC 3501 wants the space even with no text

    # One command at a time

    def _run(self, tag: bytes, work: Coroutine[Any, Any, bytes], trycreate: bool = False) -> None:
        """Answer when ``work`` (returning the text of the tagged OK) is done; read nothing until then."""
        self.pauseProducing()
        done = Deferred.fromCoroutine(work)
        done.addCallbacks(
            lambda text: self.sendPositiveResponse(tag, text), self._failed, errbackArgs=(tag, trycreate)
        )
        done.addBoth(lambda _: None if self._gone else self.resumeProducing())

    def _failed(self, failure: Failure, tag: bytes, trycreate: bool) -> None:
        text = str(failure.value).encode("ascii", "backslashreplace")
        if failure.check(NoSuchMailbox) and trycreate:
            self.sendNegativeResponse(tag, b"[TRYCREATE] " + text)
        elif failure.check(MailboxError):
            self.sendNegativeResponse(tag, text)
        elif failure.check(UnauthorizedLogin):
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] LOGIN failed")
        elif failure.check(IllegalClientResponse):
            self.sendBadResponse(tag, b"Illegal syntax: " + text)
        else:
            log.error("imap.command_failed", error=repr(failure.value), traceback=failure.getTraceback())
            self.sendBadResponse(tag, b"Server error, please try again later")

    async def _done(self, work: Awaitable[Any], text: bytes) -> bytes:
        await work
        return text

    # The selected mailbox and what changed in it

    def _close_mailbox(self) -> None:
        if self.mbox is not None:
            self.mbox.close()
            self.mbox = None
            self.state = "auth"

    def _changes_arrived(self) -> None:
        """Another session changed the selected mailbox: an IDLE session hears of it at once."""
        if self.parseState == "idle":
            self._report_updates()

    def _report_updates(self) -> None:
        if self.mbox is not None:
            expunge = self._uid or self._command not in _NO_EXPUNGE
            for line in self.mbox.updates(expunge):
                self.sendUntaggedResponse(line)

    def _respond(self, state: bytes, tag: bytes | None, message: bytes | None) -> None:
        if tag and state in (b"OK", b"NO", b"BAD"):
            self._report_updates()
        super()._respond(state, tag, message)

    # Literals, synchronizing or not

    def _literal(self, token: bytes, kind: type[LiteralString] | type[LiteralFile]) -> Deferred[Any]:
        """Read the literal ``{n}`` or ``{n+}`` that ends a command line (fires with (data, rest))."""
        match = _LITERAL.fullmatch(token)
        if match is None:
            raise IllegalClientResponse(f"malformed literal {token!r}")
        size = int(match[1])
        if kind is LiteralString and size > self._literalStringLimit:
            raise IllegalClientResponse(f"literal too long, at most {self._literalStringLimit} octets")
        read: Deferred[Any] = Deferred()
        self.parseState = "pending"
        self._pendingLiteral = kind(size, read)
        if not match[2]:
            what = b"data" if kind is LiteralFile else b"text"
            self.sendContinuationRequest(b"Ready for %d octets of %b" % (size, what))
        self.setRawMode()
        return read

    def arg_astring(self, line: bytes, final: bool = False) -> Any:
        line = line.strip()
        if line.startswith(b"{"):
            return self._literal(line, LiteralString)
        return super().arg_astring(line, final)

    def arg_literal(self, line: bytes) -> Any:
        if not line:
            raise IllegalClientResponse("Missing argument")
        return self._literal(line, LiteralFile)

    def arg_searchkeys(self, line: bytes, before: bytes = b"") -> Any:
        """SEARCH keys, reading the literals among them (``before``: the keys read so far)."""
        match = _LITERAL.search(line)
        if match is None:
            try:
                return parseNestedParens(before + line), b""
            except (MismatchedNesting, ValueError):
                raise IllegalClientResponse("bad SEARCH keys") from None
        keys = before + line[: match.start()] + b"{%b}\r\n" % match[1]
        read = self._literal(match[0], LiteralString)
        return read.addCallback(lambda result: self.arg_searchkeys(result[1], keys + result[0]))

    auth_LIST = select_LIST = (IMAP4Server._listWork, arg_astring, arg_astring, 0, b"LIST")
    auth_LSUB = select_LSUB = (IMAP4Server._listWork, arg_astring, arg_astring, 1, b"LSUB")
