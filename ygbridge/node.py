"""The node service: wires store, router link, listeners and the queue runner together."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import structlog
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.cred.portal import Portal
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from ygbridge.addressing import domain_for
from ygbridge.auth import PasswordChecker
from ygbridge.config import Config
from ygbridge.connlimit import (
    IMAP_REFUSAL,
    SMTP_REFUSAL,
    ConnectionPool,
    LimitedFactory,
    client_source,
    connection_caps,
    mesh_source,
    open_file_limit,
)
from ygbridge.delivery import DeliveryService
from ygbridge.errors import TunDisabled
from ygbridge.imap.mailbox import ImapRealm
from ygbridge.imap.tls import TLSImapFactory
from ygbridge.intake import Intake
from ygbridge.logins import LoginGate
from ygbridge.mailhub import MailHub
from ygbridge.notify import DsnRequest
from ygbridge.outcome import Reply
from ygbridge.quota import DiskFloor, HourlyQuota
from ygbridge.router.link import RouterLink
from ygbridge.router.reachability import ReachabilityWatcher
from ygbridge.router.state import NodeIdentity
from ygbridge.smtp.client import SMTPClient
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.listener import MeshListener
from ygbridge.smtp.mesh import MeshFactory
from ygbridge.smtp.spool import in_threads
from ygbridge.smtp.submission import SubmissionFactory, SubmissionRealm
from ygbridge.store.db import DBThread
from ygbridge.store.identity import record_identity
from ygbridge.tls import certificate_files
from ygbridge.tls import load as load_certificate
from ygbridge.tlspolicy import ClientTLS

log = structlog.get_logger(__name__)

#: Exit status of twistd when the router cannot carry mail (TUN disabled).
EXIT_ROUTER_UNUSABLE = 3


def _smtp_settings(reactor: Any, config: Config) -> ServerSettings:
    """The bounds of both SMTP ports; the disk floor watches the SQLite database's filesystem."""
    database = config.database_file
    disk = DiskFloor(database.parent, config.limits.min_free_disk) if database is not None else None
    return ServerSettings(reactor, config.limits, config.max_message_size, disk, in_threads(reactor))


class NodeService(MultiService):
    """A mail node beside one yggdrasil router."""

    def __init__(self, reactor: Any, config: Config) -> None:
        super().__init__()
        self._reactor = reactor
        self._config = config
        self.store = DBThread(reactor)
        self.store.setServiceParent(self)
        self.router = RouterLink(reactor, config.admin, clock=reactor)
        self.router.setServiceParent(self)
        self.mailhub = MailHub(self.store, reactor, config.limits.mailboxes_per_user)
        self.intake = Intake(
            reactor,
            self.store,
            self.mailhub,
            self.node_address,
            lambda destination, message: self.delivery.poke(destination, message),
            foreign_from=config.foreign_from,
            user_cache=config.user_cache,
        )
        self.delivery = DeliveryService(
            reactor,
            self.store,
            self._send,
            self.intake.report,
            interval=config.queue_interval,
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
            horizon=config.retry_horizon,
            delay_warning=config.delay_warning,
            per_node=config.connections_per_node,
            concurrency=config.connections,
            diagnose=self.router.diagnose,
        )
        limits = config.limits
        caps = connection_caps(limits)
        log.info("connections.caps", mesh=caps.mesh, clients=caps.clients, open_files=open_file_limit())
        self._client_connections = ConnectionPool(
            "clients", caps.clients, limits.connections_per_client_ip, client_source, reactor
        )
        mesh_connections = ConnectionPool(
            "mesh", caps.mesh, limits.connections_per_mesh_node, mesh_source, reactor
        )
        self.logins = LoginGate(reactor, limits)
        checker = PasswordChecker(reactor, self.store, self.node_address)
        self._smtp = _smtp_settings(reactor, config)
        self._quota = HourlyQuota(reactor, limits.mesh_messages_per_hour, limits.mesh_bytes_per_hour)
        submission = Portal(SubmissionRealm(self.node_address, self.intake), [checker])
        imap = Portal(ImapRealm(self.mailhub), [checker])
        tls = ClientTLS(load_certificate(certificate_files(config)).context, config.allow_plaintext)
        self._listen_clients(
            SubmissionFactory(submission, self.logins, self.node_address, tls, self._smtp),
            config.submission_listen,
            config.submission_listen_tls,
            tls,
            SMTP_REFUSAL,
        )
        self._listen_clients(
            TLSImapFactory(
                imap,
                reactor,
                tls,
                limits=limits,
                max_message_size=config.max_message_size,
                logins=self.logins,
            ),
            config.imap_listen,
            config.imap_listen_tls,
            tls,
            IMAP_REFUSAL,
        )
        self._client: SMTPClient | None = None
        self._ready = False
        self.mesh = MeshListener(reactor, config.mesh_port, self._mesh_factory, mesh_connections)
        self.mesh.setServiceParent(self)
        if config.autoconfig_listen:
            self._serve_autoconfig(config)
        self.reachability = ReachabilityWatcher(self.router, reactor, config.poll_interval, self._reappeared)
        self.router.observe(self._identity_seen)

    def _serve_autoconfig(self, config: Config) -> None:
        # imported only when served: twisted.web adds about 3 MiB to the resident memory
        from ygbridge.autoconfig import autoconfig_site

        site = autoconfig_site(config, lambda: domain_for(a) if (a := self.node_address()) else None)
        for description in config.autoconfig_listen:
            self._listen(description, site)

    def _listen(self, description: str, factory: Any) -> None:
        service = StreamServerEndpointService(serverFromString(self._reactor, description), factory)
        service.setServiceParent(self)

    def _listen_clients(
        self,
        factory: Any,
        plain: tuple[str, ...],
        implicit_tls: tuple[str, ...],
        tls: ClientTLS,
        refusal: bytes,
    ) -> None:
        """A client protocol on its STARTTLS endpoints and, wrapped in TLS, its implicit-TLS ones;
        connections counted in the client pool (over its caps, an
        implicit-TLS connection is closed without a word: clear text would be noise there)."""
        pool = self._client_connections
        for description in plain:
            self._listen(description, LimitedFactory(factory, pool, refusal))
        for description in implicit_tls:
            self._listen(
                description, LimitedFactory(TLSMemoryBIOFactory(tls.context, False, factory), pool, b"")
            )

    def node_address(self) -> ipaddress.IPv6Address | None:
        """This node's 200::/8 address, once the router has told it."""
        identity = self.router.identity
        return identity.address if identity is not None else None

    def _mesh_factory(self, address: ipaddress.IPv6Address) -> MeshFactory:
        """Mesh SMTP for ``address``; a node that connects is reachable, so its queue is tried."""
        return MeshFactory(address, self.intake, self._quota, self.delivery.wake, self._smtp)

    def _reappeared(self, destination: str) -> None:
        """A node is reachable again: connections kept from before are suspect, its mail goes now."""
        if self._client is not None:
            self._client.forget(ipaddress.IPv6Address(destination))
        self.delivery.retry_now(destination)

    async def _send(
        self,
        destination: ipaddress.IPv6Address,
        sender: str,
        recipients: list[str],
        body: bytes,
        dsn: DsnRequest,
    ) -> dict[str, Reply]:
        assert self._client is not None
        return await self._client.send(destination, sender, recipients, body, dsn)

    def startService(self) -> None:
        super().startService()
        self._await_first_identity()

    def stopService(self) -> Deferred[None] | None:
        if self._client is not None:
            self._client.close()
        stopped: Deferred[None] | None = super().stopService()  # MultiService's is unannotated
        return stopped

    def _await_first_identity(self) -> None:
        """Wait for the router; only a router that can never carry mail stops the service."""

        def failed(failure: Failure) -> None:
            if failure.check(TunDisabled):
                self._cannot_start(failure)
            elif self.running and not failure.check(CancelledError):
                self._await_first_identity()  # the link retries with backoff and has said why

        self.router.when_identity().addErrback(failed)

    def _identity_seen(self, identity: NodeIdentity) -> None:
        """After every (re)connection to the router: serve mail for the identity it reports."""
        served = Deferred.fromCoroutine(self._serve(identity))
        served.addErrback(self._cannot_start if not self._ready else self._cannot_serve)

    async def _serve(self, identity: NodeIdentity) -> None:
        domain = domain_for(identity.address)
        previous = await self.store.run(
            record_identity, identity.key.hex(), identity.address.compressed, self._reactor.seconds()
        )
        if previous is not None:
            log.critical(
                "node.identity_changed",
                old_address=previous[1],
                new_address=identity.address.compressed,
                error=f"the router's key changed: mail for {domain_for(ipaddress.IPv6Address(previous[1]))} "
                f"is no longer accepted; every address of this node is now user@{domain}",
            )
        if self._client is not None:
            self._client.close()
        self._client = SMTPClient(
            self._reactor,
            self._reactor,
            domain,
            port=self._config.mesh_port,
            max_idle=self._config.connections,
        )
        await self.mesh.serve(identity.address)
        if not self._ready:
            self._ready = True
            self.delivery.setServiceParent(self)
            self.reachability.setServiceParent(self)
            log.info(
                "ygbridge.ready",
                address=identity.address.compressed,
                domain=domain,
                key=identity.key.hex(),
                mesh_port=self._config.mesh_port,
                submission=list(self._config.submission_listen),
                submission_tls=list(self._config.submission_listen_tls),
                imap=list(self._config.imap_listen),
                imap_tls=list(self._config.imap_listen_tls),
            )

    def _cannot_serve(self, failure: Failure) -> None:
        log.critical("mesh.listen_failed", error=failure.getErrorMessage())

    def _cannot_start(self, failure: Failure) -> None:
        log.critical("ygbridge.start_failed", error=failure.getErrorMessage())
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, EXIT_ROUTER_UNUSABLE)
        self._reactor.stop()
