"""What ygbridge's client protocols use of a connected Twisted transport, as a type.

Twisted types ``Protocol.transport`` as an optional ``ITransport``, which has no
``abortConnection``; the transports these protocols run on (TCP, Unix, and the tests'
StringTransport) all have it.
"""

from __future__ import annotations

from typing import Protocol, cast

from twisted.internet.protocol import BaseProtocol


class Connection(Protocol):
    """A connected stream transport: write, close when written, or abort at once."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


def connection(protocol: BaseProtocol) -> Connection:
    """``protocol``'s transport, once it is connected."""
    assert protocol.transport is not None, "not connected yet"
    return cast(Connection, protocol.transport)
