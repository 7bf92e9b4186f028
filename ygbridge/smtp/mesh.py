"""SMTP between nodes: the connection's source address is the sender's identity (DESIGN.md 2)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import structlog
from twisted.mail import smtp

from ygbridge.addressing import MailAddress, domain_for, is_node_address
from ygbridge.errors import AddressError
from ygbridge.message import message_id
from ygbridge.outbox import Outbox
from ygbridge.smtp.server import MeshESMTP, Path, Transaction, reply

log = structlog.get_logger(__name__)


class MeshServer(MeshESMTP):
    """Accepts mail from a node for this node's users only, from senders of that node only."""

    def __init__(
        self,
        node: ipaddress.IPv6Address,
        outbox: Outbox,
        max_size: int,
        connected: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._connected = connected
        self.host = domain_for(node).encode()
        self.max_size = max_size
        self._node = node
        self._outbox = outbox
        self._transaction: Transaction | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._connected(self._source().compressed)

    def _source(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(self.transport.getPeer().host.split("%", 1)[0])

    def validateFrom(self, helo: object, origin: Path) -> Path:
        source = self._source()
        if not is_node_address(source):
            raise reply(550, "5.7.1", f"Mail is accepted only from 200::/8 node addresses, not {source}")
        if origin.text:
            try:
                sender = origin.address()
            except AddressError as exc:
                raise reply(553, "5.1.7", str(exc)) from None
            if sender.node != source:
                raise reply(
                    550,
                    "5.7.1",
                    f"Sender {sender} does not belong to the connecting node {source}",
                )

        async def commit(recipients: list[MailAddress], body: bytes) -> None:
            await self._outbox.deliver_local(
                [r.local for r in recipients], body, message_id(body), source, reverse_path=origin.text
            )
            log.info("mesh.received", source=source.compressed, recipients=len(recipients))

        self._transaction = Transaction(self.max_size, commit)
        return origin

    async def validateTo(self, path: Path) -> Callable[[], smtp.IMessage]:
        recipient = path.address()
        if recipient.node != self._node:
            raise reply(550, "5.7.1", f"Relaying denied: {recipient} is not on this node")
        if not await self._outbox.local_users([recipient.local]):
            raise reply(550, "5.1.1", f"No such user here: {recipient}")
        assert self._transaction is not None
        return self._transaction.add(recipient)
