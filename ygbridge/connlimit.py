"""How many connections the listeners hold: a cap per pool of listeners and per source address.

The mesh port is one pool, the client ports (submission and IMAP, plain and implicit TLS) another,
so that no number of mesh connections can take the file descriptors the client ports need. With
``[limits] connections = 0`` the caps come from the process's open-file limit (RLIMIT_NOFILE):
what is left after a reserve for the database, logs and outgoing mail, halved since an SMTP
connection may hold a spool file beside its socket, at most ``MAX_DERIVED`` (a container's limit
of a million files must not mean half a million connections' worth of memory), then split evenly
between the two pools.

A connection over a cap is answered with the protocol's refusal (``421 4.7.0 Too many
connections`` on SMTP, ``* BYE Too many connections`` on IMAP; nothing on an implicit-TLS port,
where clear text would be noise) and closed. Accepted sockets get short TCP keepalives and a
user timeout, so the socket of a peer that vanished is closed within about two minutes.
The wrapper sets no timers; the clock only spaces out the log lines about refusals.
"""

from __future__ import annotations

import ipaddress
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from twisted.internet.interfaces import IAddress, IReactorTime, ITransport
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from ygbridge.limits import Limits

log = structlog.get_logger(__name__)

#: File descriptors kept for everything but accepted connections (database, logs, listeners,
#: the router link, outgoing SMTP).
RESERVED_FILES = 64
#: The most connections derived from the open-file limit (about 20 kB of memory each when idle).
MAX_DERIVED = 4096
#: Seconds without traffic before the first keepalive probe, between probes, and probes unanswered.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 15, 4
#: Milliseconds sent data may stay unacknowledged before the connection is dropped.
USER_TIMEOUT_MS = 120_000
#: Seconds between two log lines about refused connections of one pool.
LOG_INTERVAL = 60.0

SMTP_REFUSAL = b"421 4.7.0 Too many connections\r\n"
IMAP_REFUSAL = b"* BYE Too many connections\r\n"

_MESH_SUBNETS = ipaddress.IPv6Network("300::/8")


@dataclass(frozen=True)
class Caps:
    """How many connections the mesh port and the client ports may hold at once."""

    mesh: int
    clients: int


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE of this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def connection_caps(limits: Limits, files: int | None = None) -> Caps:
    """The caps of both pools: ``limits.connections`` split in two, or derived from ``files``."""
    files = open_file_limit() if files is None else files
    total = limits.connections or min(max(files - RESERVED_FILES, 4) // 2, MAX_DERIVED)
    mesh = max(total // 2, 1)
    return Caps(mesh=mesh, clients=max(total - mesh, 1))


def client_source(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """A client port counts connections per IP address; loopback is not counted per source."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return None if address.is_loopback else address.compressed


def mesh_source(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The mesh port counts per node: a 02xx address, or the 03xx /64 subnet a node routes."""
    if isinstance(address, ipaddress.IPv6Address) and address in _MESH_SUBNETS:
        return ipaddress.IPv6Network((address, 64), strict=False).compressed
    return address.compressed


def _peer_ip(addr: IAddress | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = getattr(addr, "host", None)
    if not isinstance(host, str):
        return None
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class ConnectionPool:
    """Counts the open connections of some listeners, in all and per source.

    ``source_of`` names the source a connection counts against (None: only the total counts).
    """

    def __init__(
        self,
        name: str,
        cap: int,
        per_source: int,
        source_of: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None],
        clock: IReactorTime,
    ) -> None:
        self.name = name
        self.cap = cap
        self.per_source = per_source
        self._source_of = source_of
        self._clock = clock
        self.open = 0
        self._sources: dict[str, int] = {}
        self.refused = 0  # since the last log line
        self._logged_at: float | None = None

    def source(self, addr: IAddress | None) -> str | None:
        """The source that connections from ``addr`` count against; None if it has no IP."""
        ip = _peer_ip(addr)
        return None if ip is None else self._source_of(ip)

    def connections_from(self, source: str) -> int:
        """How many connections ``source`` holds open now."""
        return self._sources.get(source, 0)

    def admit(self, source: str | None) -> bool:
        """Count a new connection from ``source``, or refuse it (False) when a cap is reached."""
        if self.open >= self.cap:
            self._refused("connections.pool_full", source)
            return False
        if source is not None and self._sources.get(source, 0) >= self.per_source:
            self._refused("connections.source_full", source)
            return False
        self.open += 1
        if source is not None:
            self._sources[source] = self._sources.get(source, 0) + 1
        return True

    def release(self, source: str | None) -> None:
        """A counted connection closed."""
        self.open -= 1
        if source is not None:
            left = self._sources.pop(source) - 1
            if left:
                self._sources[source] = left

    def _refused(self, event: str, source: str | None) -> None:
        self.refused += 1
        now = self._clock.seconds()
        if self._logged_at is None or now - self._logged_at >= LOG_INTERVAL:
            log.warning(
                event,
                pool=self.name,
                source=source,
                cap=self.cap,
                per_source=self.per_source,
                open=self.open,
                refused=self.refused,
                note=f"at most one such line per {LOG_INTERVAL:.0f}s; refused counts since the last one",
            )
            self._logged_at, self.refused = now, 0


def keep_alive(transport: ITransport) -> None:
    """Short TCP keepalives and a user timeout, so that a vanished peer's socket gets closed."""
    set_keep_alive = getattr(transport, "setTcpKeepAlive", None)
    handle = getattr(transport, "getHandle", lambda: None)()
    if not isinstance(handle, socket.socket) or handle.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a UNIX socket, or no socket at all
    if set_keep_alive is None:
        return
    set_keep_alive(True)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, option):
            try:
                handle.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
            except OSError:  # a kernel without it: keepalive at its own pace, still reaped
                pass


class _Counted(Protocol):
    """Passes everything to the protocol it wraps, which gets the real transport (so that
    STARTTLS and the transport's interfaces work as without it); releases its count at the end."""

    def __init__(self, pool: ConnectionPool, source: str | None, wrapped: Protocol) -> None:
        self._pool = pool
        self._source = source
        self.wrapped = wrapped

    def logPrefix(self) -> str:
        prefix = getattr(self.wrapped, "logPrefix", None)
        return prefix() if prefix is not None else self.wrapped.__class__.__name__

    def makeConnection(self, transport: ITransport) -> None:
        keep_alive(transport)
        super().makeConnection(transport)
        self.wrapped.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pool.release(self._source)
        self.wrapped.connectionLost(reason)


class _Refused(Protocol):
    """Says why (if it can) and closes."""

    def __init__(self, refusal: bytes) -> None:
        self._refusal = refusal

    def makeConnection(self, transport: ITransport) -> None:
        if self._refusal:
            transport.write(self._refusal)
        transport.loseConnection()


class LimitedFactory(ServerFactory):
    """Wraps a listener's factory (a TLS-wrapping one for implicit TLS): connections over the
    pool's caps get ``refusal`` and are closed; the others are counted while they last."""

    def __init__(self, factory: Factory[Any], pool: ConnectionPool, refusal: bytes) -> None:
        self.factory = factory
        self.pool = pool
        self.refusal = refusal

    def doStart(self) -> None:
        self.factory.doStart()

    def doStop(self) -> None:
        self.factory.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        source = self.pool.source(addr)
        if not self.pool.admit(source):
            return _Refused(self.refusal)
        wrapped = self.factory.buildProtocol(addr)
        if wrapped is None:
            self.pool.release(source)
            return None
        return _Counted(self.pool, source, wrapped)
