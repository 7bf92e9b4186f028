"""What the submission and mesh SMTP servers share: path parsing, extensions, one data collector.

Twisted's ``smtp.Address`` cannot parse IPv6 address literals, so MAIL and RCPT are parsed here
and validators receive :class:`Path` values. Replies carry RFC 3463 enhanced status codes.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO

import structlog
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from ygbridge.addressing import MailAddress
from ygbridge.errors import AddressError, SenderMismatch
from ygbridge.nodelay import send_at_once

log = structlog.get_logger(__name__)

_PATH = re.compile(rb"^\s*(?:FROM|TO):\s*<?([^<>\s]*)>?(?:\s+(.*))?$", re.I)
_ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")
#: RFC 3463 codes for the replies Twisted writes without one (RFC 2034: every reply carries one).
_DEFAULT_ENHANCED = {
    221: b"2.0.0",
    235: b"2.7.0",
    250: b"2.0.0",
    421: b"4.4.2",
    451: b"4.3.0",
    454: b"4.7.0",
    500: b"5.5.2",
    501: b"5.5.4",
    503: b"5.5.1",
    504: b"5.5.4",
    535: b"5.7.8",
    550: b"5.0.0",
}


@dataclass(frozen=True)
class Path:
    """A reverse- or forward-path as the client wrote it; ``text`` is empty for ``<>``."""

    text: str
    params: tuple[str, ...] = ()

    def address(self) -> MailAddress:
        """The mesh mail address this path names (AddressError if it names none)."""
        return MailAddress.parse(self.text)

    def __str__(self) -> str:
        return f"<{self.text}>"


def reply(code: int, enhanced: str, text: str) -> smtp.SMTPServerError:
    """An SMTP error reply with an enhanced status code, for validators and DATA."""
    return smtp.SMTPServerError(code, f"{enhanced} {text}")


class DataTooLarge(smtp.SMTPServerError):
    """The message grew past the configured size limit during DATA."""

    def __init__(self, limit: int) -> None:
        super().__init__(552, f"5.3.4 Message exceeds the size limit of {limit} bytes".encode())


Commit = Callable[[list[MailAddress], bytes], Awaitable[None]]

#: DATA beyond this many bytes is spooled to a temporary file rather than kept in memory.
SPOOL_IN_MEMORY = 1024 * 1024


class Transaction:
    """Collects one message's DATA once for all its recipients and commits it once.

    Twisted makes one IMessage per recipient; only the first records the lines and commits,
    the others agree with it, so the single reply after DATA reflects the one commit. The lines
    go to a spooled file (on disk past :data:`SPOOL_IN_MEMORY` bytes), so a large message is
    held whole in memory only once, when it is committed.
    """

    def __init__(self, max_size: int, commit: Commit) -> None:
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self._size = 0
        self._max_size = max_size
        self._commit = commit
        self._recipients: list[MailAddress] = []
        self._receiver: _RecipientMessage | None = None

    def add(self, recipient: MailAddress) -> Callable[[], smtp.IMessage]:
        """Accept one more recipient; what ``validateTo`` returns to Twisted."""
        self._recipients.append(recipient)
        return self.message

    def message(self) -> smtp.IMessage:
        """The IMessage for one more recipient."""
        message = _RecipientMessage(self)
        if self._receiver is None:
            self._receiver = message
        return message

    def line(self, sender: _RecipientMessage, line: bytes) -> None:
        """Record a line of DATA (dot-unstuffed, without CRLF) once."""
        if sender is not self._receiver:
            return
        self._size += len(line) + 2
        if self._size > self._max_size:
            self.abort()
            raise DataTooLarge(self._max_size)
        self._spool.write(line)
        self._spool.write(b"\r\n")

    def end(self, sender: _RecipientMessage) -> Deferred[None]:
        """Commit the message (the first recipient's call) or agree with that commit."""
        if sender is not self._receiver:
            return succeed(None)
        self._spool.seek(0)
        body = self._spool.read()
        self.abort()
        return Deferred.fromCoroutine(self._commit_body(body))

    async def _commit_body(self, body: bytes) -> None:
        await self._commit(self._recipients, body)

    def abort(self) -> None:
        """Drop what was collected (connection lost, DATA refused, or committed)."""
        self._spool.close()


@implementer(smtp.IMessage)
class _RecipientMessage:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    def lineReceived(self, line: bytes) -> None:
        self._transaction.line(self, line)

    def eomReceived(self) -> Deferred[None]:
        return self._transaction.end(self)

    def connectionLost(self) -> None:
        self._transaction.abort()


class MeshESMTP(smtp.ESMTP):
    """ESMTP with mesh path parsing, SIZE/8BITMIME/PIPELINING/ENHANCEDSTATUSCODES, clean replies."""

    max_size = 32 * 1024 * 1024

    def connectionMade(self) -> None:
        send_at_once(self.transport)
        super().connectionMade()

    #: Lines that arrived while an earlier command still waited for its reply.
    _held: list[bytes] | None = None
    _replies = 0

    def lineReceived(self, line: bytes) -> None:
        """One command at a time (RFC 2920): lines pipelined behind a command whose reply waits
        for the database (RCPT, AUTH, the end of DATA) are handled once that reply is out."""
        if self._held is not None:
            self._held.append(line)
            return
        wants_reply = self.mode != smtp.DATA or line == b"."
        replies = self._replies
        super().lineReceived(line)
        if wants_reply and self._replies == replies and self._held is None:
            self._held = []

    def sendCode(self, code: int, message: bytes = b"") -> None:
        enhanced = _DEFAULT_ENHANCED.get(code)
        greeting = code == 250 and message.startswith(self.host + b" Hello ")  # HELO/EHLO: exempt
        if enhanced is not None and not greeting and not _ENHANCED.match(message):
            message = enhanced + b" " + message
        super().sendCode(code, message)
        self._replies += 1
        held, self._held = self._held or [], None
        for index, line in enumerate(held):
            self.lineReceived(line)
            if self._held is not None:  # that command waits for its reply in turn
                self._held[:0] = held[index + 1 :]
                break

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        ext = super().extensions()
        ext.update(
            {
                b"SIZE": [str(self.max_size).encode()],
                b"8BITMIME": None,
                b"PIPELINING": None,
                b"ENHANCEDSTATUSCODES": None,
            }
        )
        return ext

    def do_NOOP(self, rest: bytes) -> None:
        self.sendCode(250, b"2.0.0 OK")

    def do_VRFY(self, rest: bytes) -> None:
        """RFC 5321 section 4.5.1 wants VRFY; like most servers, it confirms nobody."""
        self.sendCode(252, b"2.5.0 Cannot verify; send the message and see")

    def receivedHeader(self, helo: object, origin: object, recipients: object) -> None:
        """Messages are stored byte for byte as sent: no trace header is added."""
        return None

    def _parse(self, rest: bytes) -> Path | None:
        match = _PATH.match(rest)
        if match is None:
            self.sendCode(501, b"5.5.4 Syntax error in path: expected <local@domain>")
            return None
        try:
            text = match.group(1).decode("utf-8")
            params = tuple((match.group(2) or b"").decode("ascii").split())
        except UnicodeDecodeError:
            self.sendCode(501, b"5.5.4 Syntax error: path is not valid UTF-8")
            return None
        return Path(text, params)

    def _size_refused(self, path: Path) -> bool:
        for param in path.params:
            key, _, value = param.partition("=")
            if key.upper() == "SIZE" and value.isdigit() and int(value) > self.max_size:
                self.sendCode(552, f"5.3.4 Message size exceeds the limit of {self.max_size} bytes".encode())
                return True
        return False

    def do_MAIL(self, rest: bytes) -> None:
        if self._from:
            self.sendCode(503, b"5.5.1 Only one sender per message")
            return
        self._to = []
        path = self._parse(rest)
        if path is None or self._size_refused(path):
            return
        validated = maybeDeferred(self.validateFrom, self._helo, path)
        validated.addCallbacks(
            self._cbFromValidate, self._refused, callbackKeywords={"msg": b"2.1.0 Sender OK"}
        )

    def do_RCPT(self, rest: bytes) -> None:
        if not self._from:
            self.sendCode(503, b"5.5.1 MAIL FROM first")
            return
        path = self._parse(rest)
        if path is None:
            return
        validated = maybeDeferred(self.validateTo, path)
        validated.addCallbacks(
            self._cbToValidate,
            self._refused,
            callbackArgs=(path,),
            callbackKeywords={"msg": b"2.1.5 Recipient OK"},
        )

    def _refused(self, failure: Failure) -> None:
        error = failure.check(smtp.SMTPServerError, smtp.SMTPBadSender, smtp.SMTPBadRcpt, AddressError)
        if error is AddressError:
            self.sendCode(553, f"5.1.3 {failure.value}".encode())
        elif error is not None:
            resp = failure.value.resp
            self.sendCode(failure.value.code, resp if isinstance(resp, bytes) else resp.encode())
        else:
            log.error("smtp.validation_error", peer=self._peer(), error=failure.getErrorMessage())
            self.sendCode(451, b"4.3.0 Local error, try again later")

    def _messageHandled(self, results: list[tuple[bool, object]]) -> None:
        failures = [r for ok, r in results if not ok]
        if not failures:
            self.sendCode(250, b"2.0.0 Message accepted")
            return
        failure = failures[0]
        assert isinstance(failure, Failure)
        if failure.check(SenderMismatch):
            self.sendCode(550, f"5.7.1 {failure.value}".encode("utf-8", "replace"))
        elif failure.check(smtp.SMTPServerError):
            resp = failure.value.resp
            self.sendCode(failure.value.code, resp if isinstance(resp, bytes) else resp.encode())
        else:
            log.error("smtp.commit_failed", peer=self._peer(), error=failure.getErrorMessage())
            self.sendCode(451, b"4.3.0 Message not stored, try again later")

    def _peer(self) -> str:
        return str(self.transport.getPeer().host) if self.transport else "?"
