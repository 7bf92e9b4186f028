"""SMTP submission for the node's own users (LAN clients): AUTH first, send as yourself only."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from twisted.cred.portal import IRealm, Portal
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from zope.interface import implementer

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.errors import AddressError
from ygbridge.outbox import Outbox
from ygbridge.smtp.server import MeshESMTP, Path, Transaction, reply

NodeAddress = Callable[[], ipaddress.IPv6Address | None]


def _own_node(node: NodeAddress) -> ipaddress.IPv6Address:
    address = node()
    if address is None:
        raise reply(451, "4.4.0", "Not connected to the yggdrasil router yet, try again shortly")
    return address


@implementer(smtp.IMessageDelivery)
class SubmissionDelivery:
    """One authenticated user's mail transactions."""

    def __init__(self, user: str, node: NodeAddress, outbox: Outbox, max_size: int) -> None:
        self._user = user
        self._node = node
        self._outbox = outbox
        self._max_size = max_size
        self._transaction: Transaction | None = None
        self._recipients: list[MailAddress] = []

    def receivedHeader(self, helo: object, origin: object, recipients: object) -> None:
        return None

    def validateFrom(self, helo: object, origin: Path) -> Path:
        own = MailAddress(self._user, _own_node(self._node))
        try:
            sender = origin.address()
        except AddressError:
            sender = None
        if sender != own:
            raise reply(553, "5.7.1", f"You may send only as {own} (or {own.literal})")
        recipients: list[MailAddress] = []

        async def commit(body: bytes) -> None:
            await self._outbox.accept(own, recipients, body)

        self._recipients = recipients
        self._transaction = Transaction(self._max_size, commit)
        return origin

    async def validateTo(self, path: Path) -> Callable[[], smtp.IMessage]:
        node = _own_node(self._node)
        recipient = path.address()
        if recipient.node == node and not await self._outbox.local_users([recipient.local]):
            raise reply(550, "5.1.1", f"No such user here: {recipient}")
        assert self._transaction is not None
        self._recipients.append(recipient)
        return self._transaction.message


@implementer(IRealm)
class SubmissionRealm:
    """Gives each authenticated user a :class:`SubmissionDelivery`."""

    def __init__(self, node: NodeAddress, outbox: Outbox, max_size: int) -> None:
        self._node = node
        self._outbox = outbox
        self._max_size = max_size

    def requestAvatar(self, avatarId: str | bytes, mind: object, *interfaces: type) -> tuple:
        if smtp.IMessageDelivery not in interfaces:
            raise NotImplementedError("submission offers IMessageDelivery only")
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        delivery = SubmissionDelivery(name, self._node, self._outbox, self._max_size)
        return smtp.IMessageDelivery, delivery, lambda: None


class SubmissionServer(MeshESMTP):
    """The submission protocol: nothing is accepted before AUTH."""

    def validateFrom(self, helo: object, origin: Path) -> Path:
        if not self.authenticated or self.delivery is None:
            raise reply(530, "5.7.0", "Authentication required")
        return self.delivery.validateFrom(helo, origin)

    def validateTo(self, path: Path) -> object:
        if self.delivery is None:
            raise reply(530, "5.7.0", "Authentication required")
        return self.delivery.validateTo(path)


class SubmissionFactory(smtp.SMTPFactory):
    """Builds submission protocols with AUTH PLAIN and LOGIN against ``portal``."""

    protocol = SubmissionServer

    def __init__(self, portal: Portal, node: NodeAddress, max_size: int) -> None:
        super().__init__(portal)
        self._node = node
        self._max_size = max_size

    def buildProtocol(self, addr: object) -> SubmissionServer:
        protocol = super().buildProtocol(addr)
        protocol.challengers = {b"PLAIN": PLAINCredentials, b"LOGIN": LOGINCredentials}
        protocol.max_size = self._max_size
        node = self._node()
        if node is not None:
            protocol.host = domain_for(node).encode()
        return protocol
