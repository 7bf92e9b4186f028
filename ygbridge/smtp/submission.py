"""SMTP submission for the node's own users (LAN clients): AUTH first, send as yourself only."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.errors import AddressError
from ygbridge.intake import Intake
from ygbridge.logins import LoginGate
from ygbridge.smtp.commands import MailParams, Path, Refused
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.protocol import SMTPServerFactory
from ygbridge.smtp.server import Commit, Delivery, IDelivery
from ygbridge.tlspolicy import ClientTLS

NodeAddress = Callable[[], ipaddress.IPv6Address | None]


def _own_node(node: NodeAddress) -> ipaddress.IPv6Address:
    address = node()
    if address is None:
        raise Refused(451, "4.4.0", "Not connected to the yggdrasil router yet, try again shortly")
    return address


class SubmissionDelivery:
    """One authenticated user's mail transactions; ``tls``: the session runs over TLS."""

    def __init__(self, user: str, node: NodeAddress, intake: Intake, tls: bool = False) -> None:
        self._user = user
        self._node = node
        self._intake = intake
        self._tls = tls

    def over_tls(self) -> SubmissionDelivery:
        """The same user's transactions in a session that runs over TLS."""
        return SubmissionDelivery(self._user, self._node, self._intake, tls=True)

    async def mail(self, path: Path, params: MailParams) -> Commit:
        own = MailAddress(self._user, _own_node(self._node))
        try:
            sender = path.address()
        except AddressError:
            sender = None
        if sender != own:
            raise Refused(553, "5.7.1", f"You may send only as {own} (or {own.literal})")
        return partial(self._intake.accept, own, smtputf8=params.smtputf8, tls=self._tls)

    async def rcpt(self, path: Path) -> MailAddress:
        node = _own_node(self._node)
        recipient = path.address()
        if recipient.node == node and not await self._intake.local_users([recipient.local]):
            raise Refused(550, "5.1.1", f"No such user here: {recipient}")
        return recipient


@implementer(IRealm)
class SubmissionRealm:
    """Gives each authenticated user a :class:`SubmissionDelivery`."""

    def __init__(self, node: NodeAddress, intake: Intake) -> None:
        self._node = node
        self._intake = intake

    def requestAvatar(self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any) -> tuple[Any, ...]:
        if IDelivery not in interfaces or not avatarId:
            raise NotImplementedError("submission offers IDelivery to logged-in users only")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else str(avatarId)
        return IDelivery, SubmissionDelivery(name, self._node, self._intake), lambda: None


class SubmissionPort:
    """STARTTLS and passwords where ``tls`` allows them; nothing is accepted before AUTH."""

    def __init__(self, portal: Portal, logins: LoginGate, tls: ClientTLS) -> None:
        self._portal = portal
        self._logins = logins
        self.tls: ClientTLS | None = tls

    def open(self, peer: IAddress) -> None:
        return None

    async def login(self, source: str, user: bytes, password: bytes, encrypted: bool) -> Delivery:
        credentials = UsernamePassword(user, password)
        _, avatar, _ = await self._logins.login(self._portal, source, credentials, IDelivery)
        delivery: SubmissionDelivery = avatar
        return delivery.over_tls() if encrypted else delivery


class SubmissionFactory(SMTPServerFactory):
    """Submission connections: AUTH PLAIN and LOGIN through ``logins``, STARTTLS with ``tls``."""

    def __init__(
        self, portal: Portal, logins: LoginGate, node: NodeAddress, tls: ClientTLS, settings: ServerSettings
    ) -> None:
        def hostname() -> str:
            address = node()
            return domain_for(address) if address is not None else "localhost"

        super().__init__(SubmissionPort(portal, logins, tls), settings, hostname)
