"""The node service: wires store, router link, listeners and the queue runner together."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import structlog
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP6ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from ygbridge.addressing import domain_for
from ygbridge.auth import PasswordChecker
from ygbridge.config import Config
from ygbridge.delivery import DeliveryService
from ygbridge.imap.mailbox import ImapRealm
from ygbridge.imap.server import ImapFactory
from ygbridge.mailstore import Mailstore
from ygbridge.outbox import Outbox
from ygbridge.router.link import RouterLink
from ygbridge.router.state import NodeIdentity
from ygbridge.smtp.client import SMTPClient
from ygbridge.smtp.mesh import MeshFactory
from ygbridge.smtp.submission import SubmissionFactory, SubmissionRealm
from ygbridge.store.db import StoreThread

log = structlog.get_logger(__name__)

#: Exit status of twistd when the router cannot carry mail (TUN disabled).
EXIT_ROUTER_UNUSABLE = 3


class NodeService(MultiService):
    """A mail node beside one yggdrasil router."""

    def __init__(self, reactor: Any, config: Config) -> None:
        super().__init__()
        self._reactor = reactor
        self._config = config
        self.store = StoreThread(reactor)
        self.store.setServiceParent(self)
        self.router = RouterLink(reactor, config.admin, clock=reactor)
        self.router.setServiceParent(self)
        self.mailstore = Mailstore(self.store, reactor)
        self.delivery = DeliveryService(
            reactor,
            self.store,
            self._send,
            interval=config.queue_interval,
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
        )
        self.outbox = Outbox(reactor, self.store, self.mailstore, self.node_address, self.delivery.poke)
        checker = PasswordChecker(reactor, self.store, self.node_address)
        submission = Portal(
            SubmissionRealm(self.node_address, self.outbox, config.max_message_size), [checker]
        )
        imap = Portal(ImapRealm(self.mailstore), [checker])
        for description in config.submission_listen:
            self._listen(
                description, SubmissionFactory(submission, self.node_address, config.max_message_size)
            )
        for description in config.imap_listen:
            self._listen(description, ImapFactory(imap, reactor))
        self._client: SMTPClient | None = None
        self._mesh_port: IListeningPort | None = None

    def _listen(self, description: str, factory: Any) -> None:
        service = StreamServerEndpointService(serverFromString(self._reactor, description), factory)
        service.setServiceParent(self)

    def node_address(self) -> ipaddress.IPv6Address | None:
        """This node's 200::/8 address, once the router has told it."""
        identity = self.router.identity
        return identity.address if identity is not None else None

    async def _send(
        self, destination: ipaddress.IPv6Address, sender: str, recipients: list[str], body: bytes
    ):  # type: ignore[no-untyped-def]
        assert self._client is not None
        return await self._client.send(destination, sender, recipients, body)

    def startService(self) -> None:
        super().startService()
        self.router.when_identity().addCallback(self._identity_known).addErrback(self._cannot_start)

    def stopService(self) -> Any:
        if self._mesh_port is not None:
            self._mesh_port.stopListening()
        return super().stopService()

    async def _listen_mesh(self, identity: NodeIdentity) -> None:
        endpoint = TCP6ServerEndpoint(
            self._reactor, self._config.mesh_port, interface=identity.address.compressed
        )
        factory = MeshFactory(identity.address, self.outbox, self._config.max_message_size)
        self._mesh_port = await endpoint.listen(factory)

    def _identity_known(self, identity: NodeIdentity) -> Deferred[None]:
        domain = domain_for(identity.address)
        self._client = SMTPClient(self._reactor, self._reactor, domain, port=self._config.mesh_port)

        def ready(_: None) -> None:
            self.delivery.setServiceParent(self)
            log.info(
                "ygbridge.ready",
                address=identity.address.compressed,
                domain=domain,
                key=identity.key.hex(),
                mesh_port=self._config.mesh_port,
                submission=list(self._config.submission_listen),
                imap=list(self._config.imap_listen),
            )

        return Deferred.fromCoroutine(self._listen_mesh(identity)).addCallback(ready)

    def _cannot_start(self, failure: Failure) -> None:
        log.critical("ygbridge.start_failed", error=failure.getErrorMessage())
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, EXIT_ROUTER_UNUSABLE)
        self._reactor.stop()
