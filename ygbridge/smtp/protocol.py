"""The SMTP server of both ports: commands, states and replies (no Twisted SMTP underneath).

Every reply carries an RFC 3463 enhanced status code except those RFC 2034 exempts (greeting,
HELO/EHLO, 334, 354). What a port decides (who may send, AUTH, TLS) comes from its :class:`Port`;
framing, ordering, time and flow are :class:`~ygbridge.smtp.connection.Connection`'s. Bounds come
from :class:`~ygbridge.limits.Limits`; here: recipients per transaction and the message size.

Why not twisted.mail's ESMTP (issue 11): bending it to these rules took its private names
(``_cbFromValidate``, ``_messageHandled``, ``_from``, LineReceiver's ``_buffer``...), which a Twisted
release may change without notice; and its LineReceiver buffers an endless line, parses DATA line by
line and times out on the global reactor. This layer uses only Twisted's public transport,
``twisted.cred`` and ``startTLS``; the outbound client (``smtp/client.py``) is ours too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import protocol
from twisted.internet.interfaces import IAddress, ITLSTransport

from ygbridge.errors import LoginThrottled
from ygbridge.smtp.commands import (
    Refused,
    Reply,
    decode_sasl,
    parse_bdat,
    parse_command,
    parse_mail,
    parse_rcpt,
    plain_credentials,
)
from ygbridge.smtp.connection import Connection, ServerSettings, source
from ygbridge.smtp.framing import DataDecoder
from ygbridge.smtp.server import Delivery, Transaction
from ygbridge.tlspolicy import ClientTLS, is_encrypted

OK = Reply(250, "2.0.0", "OK")
HELP = "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP (STARTTLS AUTH where offered)"


class Port(Protocol):
    """What a listening port decides for its connections."""

    #: STARTTLS and AUTH are offered only with this (the client ports); None on the mesh.
    tls: ClientTLS | None

    def open(self, peer: IAddress) -> Delivery | None:
        """The delivery of a new connection from ``peer``; None while it must log in first."""

    def login(self, source: str, user: bytes, password: bytes, encrypted: bool) -> Awaitable[Delivery]:
        """The delivery of a user (``encrypted``: the session runs over TLS, which cannot change
        after AUTH); fails with UnauthorizedLogin or LoginThrottled."""


@dataclass
class _Chunk:
    """A BDAT chunk still arriving (RFC 3030); its octets are read even when it is refused."""

    size: int
    left: int
    last: bool
    refusal: Reply | None


class SMTPServer(Connection):
    """One SMTP connection on the submission or the mesh port."""

    def __init__(self, port: Port, settings: ServerSettings, hostname: str) -> None:
        super().__init__(settings, hostname)
        self._port = port
        self._delivery: Delivery | None = None
        self._authenticated = False
        self._tls_started = False
        self._transaction: Transaction | None = None
        self._decoder: DataDecoder | None = None
        self._chunk: _Chunk | None = None
        self._handlers: dict[str, Callable[[bytes], Coroutine[Any, Any, None] | None]] = {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "BDAT": self._bdat,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
            "VRFY": self._vrfy,
            "HELP": self._help,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
        }

    # -- connection

    def connectionMade(self) -> None:
        self._delivery = self._port.open(self._wire.getPeer())
        super().connectionMade()

    def connectionLost(self, reason: object = None) -> None:
        super().connectionLost(reason)
        self._reset()

    # -- input

    def _stream(self) -> bool | None:
        if self._decoder is not None:
            return self._data_chunk()
        if self._chunk is not None:
            return self._bdat_chunk(self._chunk)
        return None

    def _command(self, line: bytes) -> None:
        command = parse_command(line)
        handler = self._handlers.get(command.verb)
        if handler is None:
            self._reply(Reply(500, "5.5.1", "Command not recognized"))
            return
        try:
            result = handler(command.arg)
        except Exception as exc:
            self._failed(exc)
            return
        if result is not None:
            self._run(result)

    def _data_chunk(self) -> bool:
        """Decode buffered DATA; False when the buffer is empty."""
        assert self._decoder is not None and self._transaction is not None
        chunk = self._lines.take()
        if not chunk:
            return False
        data, rest = self._decoder.feed(chunk)
        self._transaction.write(data)
        if rest is not None:
            self._decoder = None
            self._lines.add(rest)
            self._run(self._end_of_data())
        return True

    def _bdat_chunk(self, chunk: _Chunk) -> bool:
        """Read the rest of a BDAT chunk; False while the buffer is empty."""
        data = self._lines.take(chunk.left)
        if not data and chunk.left:
            return False
        chunk.left -= len(data)
        if chunk.refusal is None and self._transaction is not None:
            self._transaction.write(data)
        if chunk.left:
            return True
        self._chunk = None
        transaction = self._transaction
        if chunk.refusal is not None:
            self._reply(chunk.refusal)
        elif transaction is not None and transaction.refusal is not None:
            self._failed(transaction.refusal)
            self._reset()
        elif chunk.last:
            self._run(self._end_of_data())
        else:
            self._write(Reply(250, "2.0.0", f"{chunk.size} octets received"))
        return True

    # -- state

    def _reset(self) -> None:
        if self._transaction is not None:
            self._transaction.abort()
        self._transaction = None

    def _tls(self) -> ClientTLS | None:
        return self._port.tls

    def _auth_offered(self) -> bool:
        tls = self._tls()
        return tls is not None and tls.password_allowed(self._wire)

    def _starttls_offered(self) -> bool:
        return (
            self._tls() is not None
            and ITLSTransport.providedBy(self._wire)
            and not is_encrypted(self._wire)
            and not self._authenticated
        )

    # -- commands

    def _ehlo(self, arg: bytes) -> None:
        if not arg:
            raise Refused(501, "5.5.4", "EHLO needs your domain name or address literal")
        self._reset()
        lines = [self._host, "PIPELINING", f"SIZE {self._settings.max_size}", "8BITMIME"]
        lines += ["ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "SMTPUTF8"]
        if self._starttls_offered():
            lines.append("STARTTLS")
        if self._auth_offered():
            lines.append("AUTH PLAIN LOGIN")
        text = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
        self._out.append(text.encode("ascii"))  # always inside the input loop, which flushes

    def _helo(self, arg: bytes) -> None:
        if not arg:
            raise Refused(501, "5.5.4", "HELO needs your domain name")
        self._reset()
        self._write(Reply(250, None, self._host))

    async def _mail(self, arg: bytes) -> None:
        if self._transaction is not None:
            raise Refused(503, "5.5.1", "Sender already given (RSET to start over)")
        delivery = self._delivery
        if delivery is None:
            raise Refused(530, "5.7.0", "Authentication required")
        path, params = parse_mail(arg, self._settings.max_size, auth_offered=self._auth_offered())
        if self._settings.disk is not None:
            self._settings.disk.check(params.size or 0)
        commit = await delivery.mail(path, params)
        self._transaction = Transaction(self._settings.max_size, commit, params, self._settings.offload)
        self._write(Reply(250, "2.1.0", "Sender OK"))

    async def _rcpt(self, arg: bytes) -> None:
        transaction, delivery = self._transaction, self._delivery
        if transaction is None or delivery is None:
            raise Refused(503, "5.5.1", "MAIL FROM first")
        path, notify = parse_rcpt(arg, transaction.smtputf8)
        if len(transaction.recipients) >= self._limits.recipients:
            raise Refused(452, "4.5.3", "Too many recipients")
        transaction.add(await delivery.rcpt(path), notify)
        self._write(Reply(250, "2.1.5", "Recipient OK"))

    def _data(self, arg: bytes) -> None:
        if arg:
            raise Refused(501, "5.5.4", "DATA takes no arguments")
        if self._transaction is None:
            raise Refused(503, "5.5.1", "MAIL FROM first")
        if not self._transaction.recipients:
            raise Refused(554, "5.5.1", "No valid recipients")
        if self._transaction.chunked:
            raise Refused(503, "5.5.1", "DATA cannot follow BDAT in one transaction")
        self._decoder = DataDecoder()
        self._write(Reply(354, None, "Continue"))

    def _bdat(self, arg: bytes) -> None:
        size, last = parse_bdat(arg)
        transaction, refusal = self._transaction, None
        if transaction is None:
            refusal = Reply(503, "5.5.1", "MAIL FROM first")
        elif not transaction.recipients:
            refusal = Reply(554, "5.5.1", "No valid recipients")
        else:
            transaction.chunked = True
        self._chunk = _Chunk(size, size, last, refusal)

    async def _end_of_data(self) -> None:
        transaction, self._transaction = self._transaction, None
        assert transaction is not None
        try:
            if self._settings.disk is not None:
                self._settings.disk.check(transaction.size)
            await transaction.commit()
        finally:
            transaction.abort()
        self._junk = 0
        self._write(Reply(250, "2.0.0", "Message accepted"))

    def _rset(self, arg: bytes) -> None:
        self._reset()
        if not self._count_junk():
            self._write(OK)

    def _noop(self, arg: bytes) -> None:
        if not self._count_junk():
            self._write(OK)

    def _vrfy(self, arg: bytes) -> None:
        """RFC 5321 section 4.5.1 wants VRFY; like most servers, it confirms nobody."""
        if not self._count_junk():
            self._write(Reply(252, "2.5.0", "Cannot verify; send the message and see"))

    def _help(self, arg: bytes) -> None:
        if not self._count_junk():
            self._write(Reply(214, "2.0.0", HELP))

    def _quit(self, arg: bytes) -> None:
        self._close(Reply(221, "2.0.0", "See you later"))

    def _starttls(self, arg: bytes) -> None:
        tls = self._tls()
        if arg:
            raise Refused(501, "5.5.4", "STARTTLS takes no arguments")
        if tls is None:
            raise Refused(502, "5.5.1", "STARTTLS is not offered here")
        if self._tls_started or is_encrypted(self._wire):
            raise Refused(503, "5.5.1", "TLS is already active")
        if self._authenticated:
            raise Refused(503, "5.5.1", "STARTTLS must come before AUTH")
        if not ITLSTransport.providedBy(self._wire):
            raise Refused(454, "4.7.0", "TLS not available")
        self._write(Reply(220, "2.0.0", "Ready to start TLS"))
        self._flush()
        self._wire.startTLS(tls.context)
        self._tls_started = True
        # RFC 3207 section 4.2: start afresh, never obeying what was sent in clear after STARTTLS
        self._lines.clear()
        self._reset()

    async def _auth(self, arg: bytes) -> None:
        tls = self._tls()
        if tls is None:
            raise Refused(502, "5.5.1", "AUTH is not offered here")
        if not tls.password_allowed(self._wire):
            raise Refused(538, "5.7.11", "Encryption required: send STARTTLS first")
        if self._authenticated:
            raise Refused(503, "5.5.1", "Already authenticated")
        if self._transaction is not None:
            raise Refused(503, "5.5.1", "AUTH is not allowed during a mail transaction")
        mechanism, _, initial = arg.partition(b" ")
        mechanism = mechanism.upper()
        if mechanism == b"PLAIN":
            response = initial or await self._ask(Reply(334, None, ""))
            user, password = plain_credentials(decode_sasl(response))
        elif mechanism == b"LOGIN":
            user = decode_sasl(initial or await self._ask(Reply(334, None, "VXNlcm5hbWU6")))
            password = decode_sasl(await self._ask(Reply(334, None, "UGFzc3dvcmQ6")))
        else:
            raise Refused(504, "5.5.4", "Unrecognized authentication type: use PLAIN or LOGIN")
        try:
            delivery = await self._port.login(
                source(self._wire.getPeer()), user, password, is_encrypted(self._wire)
            )
        except UnauthorizedLogin:
            raise Refused(535, "5.7.8", "Authentication credentials invalid") from None
        except LoginThrottled:
            raise Refused(454, "4.7.0", "Too many failed logins, try again later") from None
        self._delivery = delivery
        self._authenticated = True
        self._write(Reply(235, "2.7.0", "Authentication successful"))


class SMTPServerFactory(protocol.ServerFactory):
    """Builds :class:`SMTPServer` connections of one port; ``hostname`` names the node in replies."""

    def __init__(self, port: Port, settings: ServerSettings, hostname: Callable[[], str]) -> None:
        self._port = port
        self._settings = settings
        self._hostname = hostname

    def buildProtocol(self, addr: IAddress | None) -> SMTPServer:
        server = SMTPServer(self._port, self._settings, self._hostname())
        server.factory = self
        return server
