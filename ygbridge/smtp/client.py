"""Outbound SMTP to a node's port 25: cached connections, pipelined transactions, a result per
recipient, bounded waits."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IPullProducer, IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ygbridge.message import header_section
from ygbridge.nodelay import ack_at_once
from ygbridge.notify import NO_REQUEST, DsnRequest
from ygbridge.outcome import Reply
from ygbridge.transport import Connection


class TCPConnection(Connection, Protocol):
    """What the client uses of its transport: a TCP connection (``ITCPTransport`` and ``IConsumer``)."""

    def setTcpNoDelay(self, enabled: bool) -> None: ...

    def registerProducer(self, producer: IPullProducer | IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


class SMTPClientProtocol(LineOnlyReceiver):
    """Reads replies in order; :meth:`command` sends a line and waits for its reply."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self) -> None:
        self._waiting: deque[Deferred[Reply]] = deque()
        self._unread: deque[Reply] = deque()  # replies that came before they were waited for
        self._lines: list[str] = []
        self._lost: Failure | None = None

    def next_reply(self) -> Deferred[Reply]:
        """The next reply the server sends (the greeting first)."""
        waiter: Deferred[Reply] = Deferred()
        if self._unread:
            waiter.callback(self._unread.popleft())
        elif self._lost is not None:
            waiter.errback(self._lost)
        else:
            self._waiting.append(waiter)
        return waiter

    @property
    def connection(self) -> TCPConnection:
        """The transport, once connected (this client only dials TCP)."""
        assert self.transport is not None, "not connected yet"
        return cast(TCPConnection, self.transport)

    @property
    def lost(self) -> Failure | None:
        """Why the connection closed, once it has."""
        return self._lost

    def command(self, line: bytes) -> Deferred[Reply]:
        """Send one command line and wait for its reply."""
        return self.commands([line])[0]

    def commands(self, lines: list[bytes], payload: bytes = b"") -> list[Deferred[Reply]]:
        """Send command lines in one write (PIPELINING), ``payload`` after them (the octets of a
        last ``BDAT`` line), and wait for their replies."""
        waiters = [self.next_reply() for _ in lines]
        if self._lost is None:
            self.connection.write(b"".join(line + self.delimiter for line in lines) + payload)
        return waiters

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        # A node that sends its pipelined replies in several small writes under Nagle's algorithm
        # holds each back until the last is ACKed: up to 40 ms per transaction without this.
        ack_at_once(self.transport)

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        self._lines.append(text[4:])
        if text[3:4] == "-":
            return
        try:
            code = int(text[:3])
        except ValueError:
            code = 0
        reply = Reply(code, " ".join(self._lines).strip(), tuple(self._lines))
        self._lines = []
        if self._waiting:
            self._waiting.popleft().callback(reply)
        else:
            self._unread.append(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.connection.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        reason = reason or Failure(ConnectionLost())
        self._lost = reason
        while self._waiting:
            self._waiting.popleft().errback(reason)


#: The size of each write of a message body: large writes, few trips through the reactor.
PIECE = 1024 * 1024
#: A body up to this size goes to a node with PIPELINING and CHUNKING in the same write as its
#: envelope (RFC 3030 section 4.2), one round trip per message: what a refused envelope wastes
#: is as small as the pipelined input a ygbridge node holds while a RCPT waits for its database
#: (``smtp.connection.HOLD_LINES`` lines of the default 2 KiB); larger bodies wait for the RCPT
#: replies, where the round trip saved would be a small part of the transfer.
PIPELINED_BODY = 64 * 1024


def dot_stuffed(body: bytes, chunk: int = PIECE) -> Iterator[bytes]:
    """The DATA payload for ``body`` in pieces of about ``chunk`` bytes, each ending a line:
    CRLF lines, leading dots doubled; the last piece ends in CRLF.CRLF (one write, no
    small trailing segment for Nagle's algorithm to hold back)."""
    start, previous = 0, b""
    while start < len(body):
        end = body.find(b"\r\n", start + chunk)
        end = len(body) if end < 0 else end + 2
        piece = body[start:end].replace(b"\r\n.", b"\r\n..")
        if piece.startswith(b"."):
            piece = b"." + piece
        if previous:
            yield previous
        previous = piece if piece.endswith(b"\r\n") else piece + b"\r\n"
        start = end
    yield previous + b".\r\n"


def one_chunk(body: bytes, chunk: int = PIECE) -> Iterator[bytes]:
    """``BDAT <size> LAST`` and ``body`` as it is (RFC 3030: no dot-stuffing, nothing for the
    node to decode), in pieces of ``chunk`` bytes, the command in the first."""
    yield b"BDAT %d LAST\r\n" % len(body) + body[:chunk]
    for start in range(chunk, len(body), chunk):
        yield body[start : start + chunk]


#: The slowest transfer accepted (bytes per second) before DATA is abandoned as stalled.
MIN_RATE = 10_000


@implementer(IPullProducer)
class _DataProducer:
    """Writes a message's payload (DATA or BDAT) as the connection drains, so that it is never
    buffered whole."""

    def __init__(self, transport: TCPConnection, pieces: Iterator[bytes]) -> None:
        self._transport = transport
        self._pieces = pieces
        self.done: Deferred[None] = Deferred()

    def resumeProducing(self) -> None:
        piece = next(self._pieces, None)
        if piece is None:
            self._transport.unregisterProducer()
            self.done.callback(None)
        else:
            self._transport.write(piece)

    def stopProducing(self) -> None:
        self._pieces = iter(())
        if not self.done.called:
            self.done.errback(ConnectionLost("the connection closed during DATA"))


def needs_smtputf8(sender: str, recipients: list[str], body: bytes) -> bool:
    """Whether a message is internationalised (RFC 6531): non-ASCII in its envelope or headers."""
    envelope = sender.isascii() and all(r.isascii() for r in recipients)
    return not (envelope and header_section(body).isascii())


def _refusal_without_smtputf8(sender: str, recipients: list[str], node: str) -> Reply:
    """The permanent failure of an internationalised message to a node without SMTPUTF8 (RFC 6531
    section 3.2: it must not be sent on, and its sender is told)."""
    if sender.isascii() and all(r.isascii() for r in recipients):
        return Reply(
            550,
            f"5.6.9 {node} does not support SMTPUTF8 (RFC 6531): a message with non-ASCII "
            "header fields cannot be sent to it",
        )
    return Reply(
        553,
        f"5.6.7 {node} does not support SMTPUTF8 (RFC 6531): non-ASCII addresses cannot be sent to it",
    )


class StaleConnection(Exception):
    """The connection closed (or said 421, ``reply``) before the transaction began: a cached one
    is replaced by a fresh one."""

    def __init__(self, reply: Reply | None = None) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(eq=False)
class Session:
    """One open SMTP connection to a node, after EHLO: it carries transaction after transaction."""

    protocol: SMTPClientProtocol
    extensions: frozenset[str]
    dirty: bool = False  # the last transaction ended early: RSET before the next one
    idle: IDelayedCall | None = None

    @property
    def open(self) -> bool:
        """Whether the connection is still up (so it can carry another message)."""
        return self.protocol.lost is None

    def close(self) -> None:
        """QUIT, without waiting for the answer."""
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        if self.open:
            self.protocol.sendLine(b"QUIT")
            self.protocol.connection.loseConnection()


class SMTPClient:
    """Delivers messages to nodes and reports each recipient's outcome.

    Connections are cached per node: a connection that ended its transaction is kept for the next
    one (RSET first if it ended early) and closed with QUIT after ``idle`` seconds unused. With
    PIPELINING, MAIL, every RCPT and DATA go in one write; replies are still read one by one.
    A node that offers CHUNKING (RFC 3030) gets the body as one BDAT chunk, without dot-stuffing:
    with PIPELINING too, a body of up to :data:`PIPELINED_BODY` octets goes in the envelope's
    write, larger ones once a recipient was accepted.
    At most ``max_idle`` connections are kept in all: the oldest is closed first.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        clock: IReactorTime,
        helo: str,
        port: int = 25,
        timeout: float = 60.0,
        idle: float = 30.0,
        max_idle: int = 64,
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        self._helo = helo.encode()
        self._port = port
        self._timeout = timeout
        self._idle_time = idle
        self._max_idle = max_idle
        self._idle: dict[str, list[Session]] = {}

    def idle_connections(self, destination: ipaddress.IPv6Address | None = None) -> int:
        """How many open connections wait unused (to ``destination``, or in all)."""
        if destination is not None:
            return len(self._idle.get(destination.compressed, []))
        return sum(len(sessions) for sessions in self._idle.values())

    def forget(self, destination: ipaddress.IPv6Address) -> None:
        """Close the unused connections to ``destination`` (they may predate its disappearance)."""
        for session in self._idle.pop(destination.compressed, []):
            session.close()

    def close(self) -> None:
        """Close every unused connection."""
        for sessions in list(self._idle.values()):
            for session in list(sessions):
                session.close()
        self._idle.clear()

    async def send(
        self,
        destination: ipaddress.IPv6Address,
        sender: str,
        recipients: list[str],
        body: bytes,
        dsn: DsnRequest = NO_REQUEST,
    ) -> dict[str, Reply]:
        """Transfer ``body``; a connection failure raises, SMTP refusals come back per recipient.

        The sender's DSN request (RFC 3461) goes along when the node advertises DSN."""
        while True:
            cached = self._take(destination)
            reused = cached is not None
            session = cached if cached is not None else await self._open(destination)
            if isinstance(session, Reply):
                return dict.fromkeys(recipients, session)
            try:
                results = await self._transaction(session, destination, sender, recipients, body, dsn)
            except StaleConnection as stale:
                session.protocol.connection.abortConnection()
                if reused:
                    continue
                if stale.reply is not None:
                    return dict.fromkeys(recipients, stale.reply)
                raise ConnectionLost("the connection closed before the node answered") from None
            except BaseException:
                session.protocol.connection.abortConnection()
                raise
            self._park(destination, session)
            return results

    def _take(self, destination: ipaddress.IPv6Address) -> Session | None:
        """The most recently used open connection to ``destination``, if one waits."""
        sessions = self._idle.get(destination.compressed, [])
        found = None
        while sessions and found is None:
            session = sessions.pop()
            if session.idle is not None and session.idle.active():
                session.idle.cancel()
            found = session if session.open else None
        if not sessions:
            self._idle.pop(destination.compressed, None)
        return found

    def _park(self, destination: ipaddress.IPv6Address, session: Session) -> None:
        """Keep an open session for the next transaction to ``destination``, for a while."""
        if not session.open:
            return
        key = destination.compressed
        self._idle.setdefault(key, []).append(session)
        session.idle = self._clock.callLater(self._idle_time, self._expire, key, session)
        if self.idle_connections() > self._max_idle:
            oldest_key, oldest = min(
                ((k, s) for k, ss in self._idle.items() for s in ss),
                key=lambda pair: pair[1].idle.getTime() if pair[1].idle is not None else 0.0,
            )
            self._expire(oldest_key, oldest)

    def _expire(self, key: str, session: Session) -> None:
        sessions = self._idle.get(key, [])
        if session in sessions:
            sessions.remove(session)
            if not sessions:
                del self._idle[key]
        session.close()

    async def _open(self, destination: ipaddress.IPv6Address) -> Session | Reply:
        """A new connection after its greeting and EHLO (or HELO); a refusal comes back as a Reply."""
        endpoint = TCP6ClientEndpoint(
            self._reactor, destination.compressed, self._port, timeout=self._timeout
        )
        protocol: SMTPClientProtocol = await endpoint.connect(Factory.forProtocol(SMTPClientProtocol))
        protocol.connection.setTcpNoDelay(True)  # every write is a whole command group or a DATA piece
        try:
            return await self._hello(protocol)
        except BaseException:
            protocol.connection.abortConnection()
            raise

    async def _hello(self, protocol: SMTPClientProtocol) -> Session | Reply:
        greeting = await self._wait(protocol.next_reply())
        if not greeting.ok:
            protocol.connection.loseConnection()
            return greeting
        hello = await self._wait(protocol.command(b"EHLO " + self._helo))
        if not hello.ok:
            hello = await self._wait(protocol.command(b"HELO " + self._helo))
            if not hello.ok:
                protocol.sendLine(b"QUIT")
                protocol.connection.loseConnection()
                return hello
        keywords = frozenset(line.split(" ")[0].split("=")[0].upper() for line in hello.lines[1:])
        return Session(protocol, keywords)

    def _wait(self, waiter: Deferred[Reply]) -> Deferred[Reply]:
        return waiter.addTimeout(self._timeout, self._clock)

    async def _transaction(
        self,
        session: Session,
        destination: ipaddress.IPv6Address,
        sender: str,
        recipients: list[str],
        body: bytes,
        dsn: DsnRequest,
    ) -> dict[str, Reply]:
        """One mail transaction on an open session; StaleConnection if it closed before a reply."""
        extensions, protocol = session.extensions, session.protocol
        params = f" SIZE={len(body)} BODY=8BITMIME" if "8BITMIME" in extensions else ""
        if needs_smtputf8(sender, recipients, body):
            if "SMTPUTF8" not in extensions:
                return dict.fromkeys(
                    recipients, _refusal_without_smtputf8(sender, recipients, destination.compressed)
                )
            params += " SMTPUTF8"
        with_dsn = "DSN" in extensions
        if with_dsn:
            params += dsn.mail_params()
        commands = [f"MAIL FROM:<{sender}>{params}".encode()]
        for recipient in recipients:
            extra = dsn.notify(recipient).params() if with_dsn else ""
            commands.append(f"RCPT TO:<{recipient}>{extra}".encode())
        chunking = "CHUNKING" in extensions  # the body goes as one BDAT chunk: a node like this one
        pipelined = "PIPELINING" in extensions
        early = chunking and pipelined and len(body) <= PIPELINED_BODY  # BDAT with the envelope
        if early:
            commands.append(b"BDAT %d LAST" % len(body))
        elif not chunking:
            commands.append(b"DATA")
        reset, session.dirty = session.dirty, True  # clean again once the message is stored
        replies = _Replies(
            protocol, [b"RSET", *commands] if reset else commands, pipelined, body if early else b""
        )
        try:
            try:
                first = await self._wait(replies.next())
                mail = await self._wait(replies.next()) if reset and first.code != 421 else first
            except (ConnectionLost, ConnectionDone):
                raise StaleConnection() from None
            if first.code == 421:  # the node is closing the connection
                raise StaleConnection(first)
            results = {}
            for recipient in recipients:
                reply = await self._wait(replies.next(mail.ok))
                results[recipient] = reply if mail.ok else mail
            accepted = [r for r, reply in results.items() if reply.ok]
            if early:  # refused (554 or 503) when no recipient was accepted, its octets skipped
                final = await self._wait(replies.next())
            else:
                if chunking:
                    if not accepted:
                        return results  # nothing sent: RSET before the next transaction
                    pieces = one_chunk(body)
                else:
                    data = await self._wait(replies.next(bool(accepted)))
                    if data.code != 354:
                        results.update(dict.fromkeys(accepted, data))
                        return results
                    pieces = dot_stuffed(body if accepted else b"")
                producer = _DataProducer(protocol.connection, pieces)
                protocol.connection.registerProducer(producer, False)
                await producer.done.addTimeout(self._timeout + len(body) / MIN_RATE, self._clock)
                final = await self._wait(protocol.next_reply())
            # A server that said 354 to no recipient got an empty message; a refused BDAT leaves
            # the transaction to RSET (RFC 3030 section 2).
            session.dirty = not accepted or not final.ok
            results.update(dict.fromkeys(accepted, final))
            return results
        finally:
            replies.abandon()


class _Replies:
    """The replies to a transaction's commands, in order. Pipelined, the commands all went in one
    write (``payload``, a BDAT chunk's octets, after the last); otherwise each is sent when its
    reply is asked for (or skipped)."""

    def __init__(
        self, protocol: SMTPClientProtocol, commands: list[bytes], pipelined: bool, payload: bytes = b""
    ) -> None:
        self._protocol = protocol
        self._commands = deque(commands)
        self._pending = deque(protocol.commands(commands, payload)) if pipelined else None

    def next(self, send: bool = True) -> Deferred[Reply]:
        """The next command's reply; ``send`` False skips it when it was not sent yet (a refusal
        stands in: RCPT after a refused MAIL, DATA after every recipient was refused)."""
        command = self._commands.popleft()
        if self._pending is not None:
            return self._pending.popleft()
        if not send:
            return succeed(Reply(503, "5.5.1 not sent: an earlier command was refused"))
        return self._protocol.command(command)

    def abandon(self) -> None:
        """The replies nobody will read: their connection's loss is no news."""
        for waiter in self._pending or ():
            waiter.addErrback(lambda _: None)
