"""The yggdrasil router's side of the admin socket, played against a MemoryReactorClock: the
connections RouterLink asks for are refused or accepted, and requests answered with bytes (the
answers real routers gave, as in the unit tests' ``router_samples``)."""

from __future__ import annotations

from twisted.internet.address import UNIXAddress
from twisted.internet.error import ConnectError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ygbridge.router.protocol import AdminProtocol


class FakeRouter:
    """Plays the router's side of the admin sockets a MemoryReactorClock was asked to open."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.answered = 0

    @property
    def attempts(self) -> list[str]:
        """The socket paths connected to so far, oldest first."""
        return [client[0] for client in self.reactor.unixClients]

    def refuse(self, reason: str = "No such file or directory") -> None:
        """Fail the latest connection attempt."""
        _, factory, *_ = self.reactor.unixClients[-1]
        factory.clientConnectionFailed(None, Failure(ConnectError(2, reason)))

    def accept(self) -> tuple[AdminProtocol, StringTransport]:
        """Complete the latest connection attempt."""
        address, factory, *_ = self.reactor.unixClients[-1]
        protocol = factory.buildProtocol(UNIXAddress(address))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.answered = 0
        return protocol, transport

    def answer(self, protocol: AdminProtocol, transport: StringTransport, *answers: bytes) -> None:
        """Answer the requests written so far, in order, checking that each one was sent."""
        for answer in answers:
            self.answered += 1
            assert transport.value().count(b'"request"') >= self.answered, "answer before request"
            protocol.dataReceived(answer)
