"""SMTP between nodes: the connection's source address is the sender's identity (docs/mesh.md),
and each sending node has an hourly quota of messages and bytes."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import partial

import structlog
from twisted.internet.interfaces import IAddress

from ygbridge.addressing import MailAddress, domain_for, is_node_address
from ygbridge.errors import AddressError
from ygbridge.intake import Intake
from ygbridge.message import message_id
from ygbridge.notify import DsnRequest
from ygbridge.quota import HourlyQuota
from ygbridge.smtp.commands import MailParams, Path, Refused
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.protocol import SMTPServerFactory
from ygbridge.smtp.server import Commit
from ygbridge.tlspolicy import ClientTLS

log = structlog.get_logger(__name__)


class MeshDelivery:
    """Mail from the node at ``source``: for this node's users only, from senders of that node only."""

    def __init__(
        self, node: ipaddress.IPv6Address, source: ipaddress.IPv6Address, intake: Intake, quota: HourlyQuota
    ) -> None:
        self._node = node
        self._source = source
        self._intake = intake
        self._quota = quota

    async def mail(self, path: Path, params: MailParams) -> Commit:
        source = self._source
        if not is_node_address(source):
            raise Refused(550, "5.7.1", f"Mail is accepted only from 200::/8 node addresses, not {source}")
        if path.text:
            try:
                sender = path.address()
            except AddressError as exc:
                raise Refused(553, "5.1.7", str(exc)) from None
            if sender.node != source:
                raise Refused(
                    550, "5.7.1", f"Sender {sender} does not belong to the connecting node {source}"
                )
        self._quota.check(source.compressed, params.size or 0)
        return partial(self._commit, path.text, params.smtputf8)

    async def _commit(
        self, reverse_path: str, smtputf8: bool, recipients: list[MailAddress], body: bytes, dsn: DsnRequest
    ) -> None:
        source = self._source
        self._quota.check(source.compressed, len(body))
        await self._intake.deliver_local(
            [r.local for r in recipients],
            body,
            message_id(body),
            source,
            reverse_path=reverse_path,
            dsn=dsn,
            smtputf8=smtputf8,
        )
        self._quota.record(source.compressed, len(body))
        log.info("mesh.received", source=source.compressed, recipients=len(recipients), size=len(body))

    async def rcpt(self, path: Path) -> MailAddress:
        recipient = path.address()
        if recipient.node != self._node:
            raise Refused(550, "5.7.1", f"Relaying denied: {recipient} is not on this node")
        if not await self._intake.local_users([recipient.local]):
            raise Refused(550, "5.1.1", f"No such user here: {recipient}")
        return recipient


class MeshPort:
    """Port 25 on the node's own address: no AUTH, no STARTTLS; a node that connects is reachable."""

    tls: ClientTLS | None = None

    def __init__(
        self,
        node: ipaddress.IPv6Address,
        intake: Intake,
        quota: HourlyQuota,
        connected: Callable[[str], None],
    ) -> None:
        self._node = node
        self._intake = intake
        self._quota = quota
        self._connected = connected

    def open(self, peer: IAddress) -> MeshDelivery:
        host = getattr(peer, "host", "::")
        source = ipaddress.IPv6Address(host.split("%", 1)[0])
        self._connected(source.compressed)
        return MeshDelivery(self._node, source, self._intake, self._quota)

    async def login(self, source: str, user: bytes, password: bytes, encrypted: bool) -> MeshDelivery:
        raise Refused(502, "5.5.1", "AUTH is not offered here")


class MeshFactory(SMTPServerFactory):
    """Mesh SMTP connections for the node at ``node``."""

    def __init__(
        self,
        node: ipaddress.IPv6Address,
        intake: Intake,
        quota: HourlyQuota,
        connected: Callable[[str], None],
        settings: ServerSettings,
    ) -> None:
        domain = domain_for(node)
        super().__init__(MeshPort(node, intake, quota, connected), settings, lambda: domain)
