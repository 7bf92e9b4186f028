"""Outbound SMTP to a node's port 25: one transaction, a result per recipient, bounded waits."""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP6ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure


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


def dot_stuffed(body: bytes) -> bytes:
    """The DATA payload for ``body``: CRLF lines, leading dots doubled, ending in CRLF.CRLF."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


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
    ) -> dict[str, Reply]:
        """Transfer ``body``; a connection failure raises, SMTP refusals come back per recipient."""
        endpoint = TCP6ClientEndpoint(
            self._reactor, destination.compressed, self._port, timeout=self._timeout
        )
        protocol: SMTPClientProtocol = await endpoint.connect(Factory.forProtocol(SMTPClientProtocol))
        try:
            results = await self._transaction(protocol, sender, recipients, body)
        except BaseException:
            protocol.transport.abortConnection()
            raise
        protocol.transport.loseConnection()
        return results

    def _wait(self, waiter: Deferred[Reply]) -> Deferred[Reply]:
        return waiter.addTimeout(self._timeout, self._clock)

    async def _transaction(
        self, protocol: SMTPClientProtocol, sender: str, recipients: list[str], body: bytes
    ) -> dict[str, Reply]:
        greeting = await self._wait(protocol.next_reply())
        if not greeting.ok:
            return dict.fromkeys(recipients, greeting)
        hello = await self._wait(protocol.command(b"EHLO " + self._helo))
        if not hello.ok:
            hello = await self._wait(protocol.command(b"HELO " + self._helo))
            if not hello.ok:
                return dict.fromkeys(recipients, hello)
        params = f" SIZE={len(body)} BODY=8BITMIME" if "8BITMIME" in hello.text.upper() else ""
        mail = await self._wait(protocol.command(f"MAIL FROM:<{sender}>{params}".encode()))
        if not mail.ok:
            return dict.fromkeys(recipients, mail)
        results = {}
        for recipient in recipients:
            results[recipient] = await self._wait(protocol.command(f"RCPT TO:<{recipient}>".encode()))
        accepted = [r for r, reply in results.items() if reply.ok]
        if not accepted:
            protocol.sendLine(b"QUIT")
            return results
        data = await self._wait(protocol.command(b"DATA"))
        if data.code != 354:
            results.update(dict.fromkeys(accepted, data))
            return results
        protocol.transport.write(dot_stuffed(body))
        final = await self._wait(protocol.next_reply())
        results.update(dict.fromkeys(accepted, final))
        protocol.sendLine(b"QUIT")
        return results
