"""The mesh SMTP listener: bound to the node's own 200::/7 address only, and moved when it changes."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

from ygbridge.connlimit import SMTP_REFUSAL, ConnectionPool, LimitedFactory


class MeshListener(Service):
    """Listens on ``[address]:port``; :meth:`serve` (re)binds it to the current node address.

    Its connections count against ``connections`` (which outlives a rebinding).
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        factory_for: Callable[[ipaddress.IPv6Address], Factory[Any]],
        connections: ConnectionPool,
    ) -> None:
        self._reactor = reactor
        self._port_number = port
        self._factory_for = factory_for
        self._connections = connections
        self._port: IListeningPort | None = None
        self.address: ipaddress.IPv6Address | None = None

    async def serve(self, address: ipaddress.IPv6Address) -> None:
        """Accept mesh mail on ``address`` (and no longer on the previous one)."""
        if address == self.address:
            return
        await self._close()
        endpoint = TCP6ServerEndpoint(self._reactor, self._port_number, interface=address.compressed)
        factory = LimitedFactory(self._factory_for(address), self._connections, SMTP_REFUSAL)
        self._port = await endpoint.listen(factory)
        self.address = address

    async def _close(self) -> None:
        port, self._port, self.address = self._port, None, None
        stopped = port.stopListening() if port is not None else None
        if stopped is not None:
            await stopped

    def stopService(self) -> Any:
        super().stopService()
        if self._port is not None:
            return self._port.stopListening()
        return None
