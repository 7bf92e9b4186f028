"""SMTP submission for the node's own users (LAN clients): AUTH first, send as yourself only."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import partial

from twisted.cred.portal import IRealm, Portal
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from zope.interface import implementer

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.errors import AddressError
from ygbridge.outbox import Outbox
from ygbridge.smtp.server import MeshESMTP, Path, Transaction, reply
from ygbridge.tlspolicy import ClientTLS, is_encrypted

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
        self._transaction = Transaction(self._max_size, partial(self._outbox.accept, own))
        return origin

    async def validateTo(self, path: Path) -> Callable[[], smtp.IMessage]:
        node = _own_node(self._node)
        recipient = path.address()
        if recipient.node == node and not await self._outbox.local_users([recipient.local]):
            raise reply(550, "5.1.1", f"No such user here: {recipient}")
        assert self._transaction is not None
        return self._transaction.add(recipient)


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
    """The submission protocol: STARTTLS, passwords only where ``tls`` allows, nothing before AUTH."""

    tls: ClientTLS
    #: Set by STARTTLS until the next read: lines pipelined after it came in clear and are dropped.
    _cleartext_tail = False

    def connectionMade(self) -> None:
        super().connectionMade()
        # Twisted would offer STARTTLS inside implicit TLS too
        self.canStartTLS = self.canStartTLS and not is_encrypted(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._cleartext_tail = False
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if not self._cleartext_tail:
            super().lineReceived(line)

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        ext = super().extensions()
        if not self.tls.password_allowed(self.transport):
            del ext[b"AUTH"]  # RFC 4954 section 4: not offered where it must not be used
        return ext

    def ext_AUTH(self, rest: bytes) -> None:
        if self.tls.password_allowed(self.transport):
            super().ext_AUTH(rest)
        else:
            self.sendCode(538, b"5.7.11 Encryption required: send STARTTLS first")

    def ext_STARTTLS(self, rest: bytes) -> None:
        if self.startedTLS or is_encrypted(self.transport):
            self.sendCode(503, b"5.5.1 TLS is already active")
        elif not self.canStartTLS:
            self.sendCode(454, b"4.7.0 TLS not available")
        elif self.authenticated:
            self.sendCode(503, b"5.5.1 STARTTLS must come before AUTH")
        else:
            self.sendCode(220, b"2.0.0 Ready to start TLS")
            self.transport.startTLS(self.ctx)
            self.startedTLS = True
            # RFC 3207 section 4.2: start afresh, and never obey what was sent in clear after STARTTLS
            self._from, self._to = None, []
            self._buffer = b""
            self._cleartext_tail = True

    def validateFrom(self, helo: object, origin: Path) -> Path:
        if not self.authenticated or self.delivery is None:
            raise reply(530, "5.7.0", "Authentication required")
        return self.delivery.validateFrom(helo, origin)

    def validateTo(self, path: Path) -> object:
        if self.delivery is None:
            raise reply(530, "5.7.0", "Authentication required")
        return self.delivery.validateTo(path)


class SubmissionFactory(smtp.SMTPFactory):
    """Builds submission protocols with AUTH PLAIN and LOGIN against ``portal``, STARTTLS with ``tls``."""

    protocol = SubmissionServer

    def __init__(self, portal: Portal, node: NodeAddress, max_size: int, tls: ClientTLS) -> None:
        super().__init__(portal)
        self._node = node
        self._max_size = max_size
        self._tls = tls

    def buildProtocol(self, addr: object) -> SubmissionServer:
        protocol = super().buildProtocol(addr)
        protocol.challengers = {b"PLAIN": PLAINCredentials, b"LOGIN": LOGINCredentials}
        protocol.tls = self._tls
        protocol.ctx = self._tls.context
        protocol.max_size = self._max_size
        node = self._node()
        if node is not None:
            protocol.host = domain_for(node).encode()
        return protocol
