"""The link to the local yggdrasil router: one admin connection, kept up, and the node's identity.

Admin socket URIs are tried in order (the configuration supplies its defaults when none is configured).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from ipaddress import IPv6Address
from typing import Any, cast

import structlog
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from ygbridge.errors import RouterError, RouterUnreachable, TunDisabled
from ygbridge.router.protocol import AdminProtocol, admin_endpoint
from ygbridge.router.state import NodeIdentity, NodeStatus, Peer, Session, why_unreachable
from ygbridge.transport import connection

MAX_RETRY_DELAY = 60.0

Endpoints = Sequence[tuple[str, IStreamClientEndpoint]]


def admin_endpoints(reactor: Any, uris: Sequence[str]) -> Endpoints:
    """(uri, endpoint) for each admin URI.

    Raises ConfigError for a URI that is neither ``unix://`` nor ``tcp://``.
    """
    return [(uri, admin_endpoint(reactor, uri)) for uri in uris]


def _reason(error: BaseException) -> str:
    """Why one connection attempt failed, in a few words (``No such file or directory``)."""
    if isinstance(error, ConnectError) and error.args and error.args[0]:
        return str(error.args[0])
    return str(error) or type(error).__name__


async def connect_first(endpoints: Endpoints, factory: IProtocolFactory) -> tuple[str, AdminProtocol]:
    """Connect to the first endpoint that accepts; RouterUnreachable names every one tried."""
    attempts: list[tuple[str, str]] = []
    for uri, endpoint in endpoints:
        try:
            return uri, cast(AdminProtocol, await endpoint.connect(factory))
        except CancelledError:
            raise
        except Exception as exc:
            attempts.append((uri, _reason(exc)))
    raise RouterUnreachable(attempts)


def _tun_disabled(uri: str | None) -> TunDisabled:
    return TunDisabled(
        f"yggdrasil at {uri} runs without a TUN interface (IfName: none), so no mail can cross "
        "the mesh; set IfName to auto (or an interface name) in its configuration and restart it"
    )


@implementer(IStreamClientEndpoint)
class _LinkEndpoint:
    """The endpoint ClientService reconnects through: every URI in order, failures reported."""

    def __init__(self, link: RouterLink) -> None:
        self._link = link

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._link._connect(protocolFactory))


class RouterLink(Service):
    """Keeps the admin connection up (ClientService, backoff) and reads getSelf + getTun on
    every (re)connection. The first failure of an outage is logged once, clearly."""

    def __init__(self, reactor: Any, uris: Sequence[str], clock: IReactorTime) -> None:
        self.identity: NodeIdentity | None = None
        self._endpoints = admin_endpoints(reactor, uris)
        self._protocol: AdminProtocol | None = None
        self._uri: str | None = None  # the admin socket of the current or last connection
        self._waiting: list[Deferred[NodeIdentity]] = []
        self._observers: list[Callable[[NodeIdentity], object]] = []
        self._failures = 0  # consecutive failed attempts, connecting or reading the identity
        self._outage_logged = False
        backoff = backoffPolicy(maxDelay=MAX_RETRY_DELAY)
        self._service = ClientService(
            _LinkEndpoint(self),
            Factory.forProtocol(partial(AdminProtocol, clock)),
            retryPolicy=lambda _attempt: backoff(self._failures),
            clock=clock,
            prepareConnection=self._prepare,
        )

    def when_identity(self) -> Deferred[NodeIdentity]:
        """Fires with the node's identity as soon as it is known; fails with the error of the
        next attempt while it is not (RouterUnreachable, TunDisabled, other RouterError)."""
        if self.identity is not None:
            return succeed(self.identity)
        waiter: Deferred[NodeIdentity] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def observe(self, observer: Callable[[NodeIdentity], object]) -> None:
        """Call ``observer(identity)`` after every (re)connection, with the identity just read."""
        self._observers.append(observer)

    def peers(self) -> Deferred[tuple[Peer, ...]]:
        """The router's current peers; fails with RouterError while not connected."""
        return maybeDeferred(lambda: self._current().get_peers())

    def sessions(self) -> Deferred[tuple[Session, ...]]:
        """The router's current sessions; fails with RouterError while not connected."""
        return maybeDeferred(lambda: self._current().get_sessions())

    async def diagnose(self, destination: IPv6Address) -> str | None:
        """Why ``destination`` may be unreachable, as the router sees it now (None: no idea)."""
        try:
            return why_unreachable(destination, await self.peers(), await self.sessions())
        except RouterError:
            return None

    def startService(self) -> None:
        super().startService()
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.cancel()
        return self._service.stopService()

    def _current(self) -> AdminProtocol:
        if self._protocol is None:
            raise RouterError("ygbridge is not connected to the yggdrasil admin socket right now")
        return self._protocol

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        try:
            self._uri, protocol = await connect_first(self._endpoints, factory)
        except RouterUnreachable as exc:
            self._failed(exc)
            raise
        return protocol

    def _prepare(self, protocol: IProtocol) -> None:
        """Start reading the identity without holding ClientService in its connecting state:
        a disconnect while it prepares is a state it cannot leave cleanly."""
        Deferred.fromCoroutine(self._read_identity(cast(AdminProtocol, protocol), self._uri))

    async def _read_identity(self, protocol: AdminProtocol, uri: str | None) -> None:
        try:
            identity = await protocol.get_self()
            tun = await protocol.get_tun()
            if not tun.enabled:
                raise _tun_disabled(uri)
        except RouterError as exc:
            if self.running:
                self._failed(exc)
            connection(protocol).loseConnection()  # ClientService retries
            return
        if self.identity is not None and identity.key != self.identity.key:
            structlog.get_logger().warning(
                "router.identity_changed", old=str(self.identity.address), new=str(identity.address)
            )
        self.identity, self._protocol = identity, protocol
        self._failures, self._outage_logged = 0, False
        protocol.when_closed().addCallback(self._closed, protocol)
        structlog.get_logger().info(
            "router.connected", uri=uri, address=str(identity.address), build_version=identity.build_version
        )
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(identity)
        for observer in self._observers:
            observer(identity)

    def _closed(self, _: None, protocol: AdminProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
            if self.running:
                structlog.get_logger().warning("router.disconnected", uri=self._uri)

    def _failed(self, error: RouterError) -> None:
        """Count a failed attempt, log the first of an outage, and fail whoever waits."""
        self._failures += 1
        if not self._outage_logged:
            self._outage_logged = True
            log = structlog.get_logger()
            if isinstance(error, RouterUnreachable):
                log.error("router.unreachable", uris=list(error.uris), error=str(error))
            elif isinstance(error, TunDisabled):
                log.error("router.tun_disabled", uri=self._uri, error=str(error))
            else:
                log.error("router.error", uri=self._uri, error=str(error))
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(error)


async def read_node(reactor: Any, uris: Sequence[str]) -> NodeStatus:
    """One-off read of the router for the CLI: identity, TUN, peers and sessions over one
    connection to the first of ``uris`` that answers."""
    factory = Factory.forProtocol(partial(AdminProtocol, reactor))
    _, protocol = await connect_first(admin_endpoints(reactor, uris), factory)
    try:
        identity = await protocol.get_self()
        tun = await protocol.get_tun()
        peers = await protocol.get_peers()
        sessions = await protocol.get_sessions() if tun.enabled else ()
    finally:
        connection(protocol).loseConnection()
    return NodeStatus(identity, tun, peers, sessions)
