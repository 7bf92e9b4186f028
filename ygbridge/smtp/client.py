"""Outbound SMTP to a node's port 25: one transaction, a result per recipient, bounded waits."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPullProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ygbridge.notify import NO_REQUEST, DsnRequest


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def describe_failure(failure: BaseException, destination: ipaddress.IPv6Address) -> str:
    """Why an attempt to deliver to ``destination`` ended without replies, for people (status,
    logs, notifications): no exception class names."""
    node = destination.compressed
    if isinstance(failure, (defer.TimeoutError, error.TimeoutError, error.TCPTimedOutError, TimeoutError)):
        return f"no answer from {node} in time"
    if isinstance(failure, (error.ConnectionRefusedError, ConnectionRefusedError)):
        return f"{node} refused the connection: no mail service listens on its port"
    if isinstance(failure, error.NoRouteError) or getattr(failure, "errno", None) in (101, 113):
        return f"no route to node {node}"
    if isinstance(failure, (error.ConnectionLost, error.ConnectionDone, ConnectionError)):
        return f"the connection to {node} was lost during the transaction"
    if isinstance(failure, error.ConnectError):
        return (
            f"cannot connect to {node}: {str(failure).removeprefix('An error occurred while connecting: ')}"
        )
    if isinstance(failure, OSError) and failure.strerror:
        return f"cannot reach {node}: {failure.strerror}"
    return f"delivery to {node} failed: {failure}" if str(failure) else f"delivery to {node} failed"


class SMTPClientProtocol(LineOnlyReceiver):
    """Reads replies in order; :meth:`command` sends a line and waits for its reply."""

    delimiter = b"\r\n"
    MAX_LENGTH = 65536

    def __init__(self) -> None:
        self._waiting: deque[Deferred[Reply]] = deque()
        self._lines: list[str] = []
        self._lost: Failure | None = None

    def next_reply(self) -> Deferred[Reply]:
        """The next reply the server sends (the greeting first)."""
        waiter: Deferred[Reply] = Deferred()
        if self._lost is not None:
            waiter.errback(self._lost)
        else:
            self._waiting.append(waiter)
        return waiter

    def command(self, line: bytes) -> Deferred[Reply]:
        """Send one command line and wait for its reply."""
        waiter = self.next_reply()
        if self._lost is None:
            self.sendLine(line)
        return waiter

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        self._lines.append(text[4:])
        if text[3:4] == "-":
            return
        try:
            code = int(text[:3])
        except ValueError:
            code = 0
        reply = Reply(code, " ".join(self._lines).strip())
        self._lines = []
        if self._waiting:
            self._waiting.popleft().callback(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        reason = reason or Failure(ConnectionLost())
        self._lost = reason
        while self._waiting:
            self._waiting.popleft().errback(reason)


def dot_stuffed(body: bytes, chunk: int = 65536) -> Iterator[bytes]:
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


#: The slowest transfer accepted (bytes per second) before DATA is abandoned as stalled.
MIN_RATE = 10_000


@implementer(IPullProducer)
class _DataProducer:
    """Writes the DATA payload as the connection drains, so it is never buffered whole."""

    def __init__(self, transport: Any, body: bytes) -> None:
        self._transport = transport
        self._pieces = dot_stuffed(body)
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


class SMTPClient:
    """Delivers one message to one node and reports each recipient's outcome."""

    def __init__(
        self,
        reactor: IReactorTCP,
        clock: IReactorTime,
        helo: str,
        port: int = 25,
        timeout: float = 60.0,
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        self._helo = helo.encode()
        self._port = port
        self._timeout = timeout

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
        endpoint = TCP6ClientEndpoint(
            self._reactor, destination.compressed, self._port, timeout=self._timeout
        )
        protocol: SMTPClientProtocol = await endpoint.connect(Factory.forProtocol(SMTPClientProtocol))
        protocol.transport.setTcpNoDelay(True)  # every write is a whole command or a DATA piece
        try:
            results = await self._transaction(protocol, sender, recipients, body, dsn)
        except BaseException:
            protocol.transport.abortConnection()
            raise
        protocol.transport.loseConnection()
        return results

    def _wait(self, waiter: Deferred[Reply]) -> Deferred[Reply]:
        return waiter.addTimeout(self._timeout, self._clock)

    async def _transaction(
        self, protocol: SMTPClientProtocol, sender: str, recipients: list[str], body: bytes, dsn: DsnRequest
    ) -> dict[str, Reply]:
        greeting = await self._wait(protocol.next_reply())
        if not greeting.ok:
            return dict.fromkeys(recipients, greeting)
        hello = await self._wait(protocol.command(b"EHLO " + self._helo))
        if not hello.ok:
            hello = await self._wait(protocol.command(b"HELO " + self._helo))
            if not hello.ok:
                return dict.fromkeys(recipients, hello)
        extensions = {word.split("=")[0] for word in hello.text.upper().split()}
        params = f" SIZE={len(body)} BODY=8BITMIME" if "8BITMIME" in extensions else ""
        with_dsn = "DSN" in extensions
        if with_dsn:
            params += dsn.mail_params()
        mail = await self._wait(protocol.command(f"MAIL FROM:<{sender}>{params}".encode()))
        if not mail.ok:
            return dict.fromkeys(recipients, mail)
        results = {}
        for recipient in recipients:
            extra = dsn.notify(recipient).params() if with_dsn else ""
            results[recipient] = await self._wait(protocol.command(f"RCPT TO:<{recipient}>{extra}".encode()))
        accepted = [r for r, reply in results.items() if reply.ok]
        if not accepted:
            protocol.sendLine(b"QUIT")
            return results
        data = await self._wait(protocol.command(b"DATA"))
        if data.code != 354:
            results.update(dict.fromkeys(accepted, data))
            return results
        producer = _DataProducer(protocol.transport, body)
        protocol.transport.registerProducer(producer, False)
        await producer.done.addTimeout(self._timeout + len(body) / MIN_RATE, self._clock)
        final = await self._wait(protocol.next_reply())
        results.update(dict.fromkeys(accepted, final))
        protocol.sendLine(b"QUIT")
        return results
