"""Connection caps: per pool and per source, the refusal each protocol hears, keepalives, quiet logs."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

from ygbridge.connlimit import (
    IMAP_REFUSAL,
    LOG_INTERVAL,
    MAX_DERIVED,
    SMTP_REFUSAL,
    ConnectionPool,
    LimitedFactory,
    client_source,
    connection_caps,
    keep_alive,
    mesh_source,
)
from ygbridge.limits import Limits


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def connect(factory: LimitedFactory, host: str) -> tuple[Any, StringTransport]:
    address = IPv6Address("TCP", host, 4000) if ":" in host else IPv4Address("TCP", host, 4000)
    protocol = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_caps_come_from_the_open_file_limit_or_the_setting() -> None:
    assert connection_caps(Limits(), files=1024) == connection_caps(Limits(connections=480))
    caps = connection_caps(Limits(), files=1024)
    assert caps.mesh + caps.clients == (1024 - 64) // 2 and caps.mesh <= caps.clients
    assert connection_caps(Limits(connections=10)).mesh == 5
    assert connection_caps(Limits(), files=10).mesh >= 1  # never zero
    big = connection_caps(Limits(), files=1 << 20)
    assert big.mesh + big.clients == MAX_DERIVED  # a container's million files: not all for connections


def test_sources() -> None:
    node = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
    assert mesh_source(node) == node.compressed
    assert mesh_source(ipaddress.IPv6Address("303:2ed1:2aa3:1e92::5")) == "303:2ed1:2aa3:1e92::/64"
    assert mesh_source(ipaddress.IPv6Address("303:2ed1:2aa3:1e92::6")) == "303:2ed1:2aa3:1e92::/64"
    assert client_source(ipaddress.IPv4Address("192.168.1.2")) == "192.168.1.2"
    assert client_source(ipaddress.IPv4Address("127.0.0.1")) is None
    assert client_source(ipaddress.IPv6Address("::ffff:127.0.0.1")) is None


def test_per_source_and_pool_caps(clock: Clock) -> None:
    pool = ConnectionPool("mesh", 3, 2, mesh_source, clock)
    factory = LimitedFactory(Factory.forProtocol(Recorder), pool, SMTP_REFUSAL)
    first, first_transport = connect(factory, "200::1")
    connect(factory, "200::1")
    refused, transport = connect(factory, "200::1")
    assert transport.value() == SMTP_REFUSAL and transport.disconnecting
    assert not isinstance(refused, Recorder)
    connect(factory, "200::2")
    _, transport = connect(factory, "200::3")  # the pool is full
    assert transport.value() == SMTP_REFUSAL
    assert pool.open == 3 and pool.connections_from("200::1") == 2
    # the wrapped protocol talks to the real transport and hears everything
    first.dataReceived(b"EHLO x\r\n")
    assert first.wrapped.transport is first_transport and first.wrapped.received == b"EHLO x\r\n"
    first.connectionLost(None)
    assert first.wrapped.lost and pool.open == 2 and pool.connections_from("200::1") == 1
    _, transport = connect(factory, "200::1")
    assert transport.value() == b"" and not transport.disconnecting


def test_loopback_clients_count_only_in_the_pool(clock: Clock) -> None:
    pool = ConnectionPool("clients", 5, 1, client_source, clock)
    factory = LimitedFactory(Factory.forProtocol(Recorder), pool, IMAP_REFUSAL)
    for _ in range(5):
        assert connect(factory, "127.0.0.1")[1].value() == b""
    assert connect(factory, "127.0.0.1")[1].value() == IMAP_REFUSAL


def test_implicit_tls_refusal_is_silent(clock: Clock) -> None:
    pool = ConnectionPool("clients", 0, 1, client_source, clock)
    tls = TLSMemoryBIOFactory(CertificateOptions(), False, Factory.forProtocol(Recorder))
    _, transport = connect(LimitedFactory(tls, pool, b""), "10.0.0.1")
    assert transport.value() == b"" and transport.disconnecting


def test_refusals_are_logged_at_most_once_a_minute(clock: Clock) -> None:
    pool = ConnectionPool("mesh", 1, 1, mesh_source, clock)
    factory = LimitedFactory(Factory.forProtocol(Recorder), pool, SMTP_REFUSAL)
    connect(factory, "200::1")
    with capture_logs() as logs:
        for _ in range(500):
            connect(factory, "200::2")
        clock.advance(LOG_INTERVAL)
        connect(factory, "200::2")
    assert [entry["event"] for entry in logs] == ["connections.pool_full"] * 2
    assert [entry["refused"] for entry in logs] == [1, 500]


def test_keepalive_on_accepted_sockets() -> None:
    class Transport:
        keepalive = False

        def __init__(self, handle: socket.socket) -> None:
            self.handle = handle

        def setTcpKeepAlive(self, on: bool) -> None:
            self.keepalive = on
            self.handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(on))

        def getHandle(self) -> socket.socket:
            return self.handle

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as handle:
        transport = Transport(handle)
        keep_alive(transport)  # type: ignore[arg-type]
        assert transport.keepalive
        assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    keep_alive(StringTransport())  # no socket: nothing to do
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as handle:
        unix = Transport(handle)
        keep_alive(unix)  # type: ignore[arg-type]
        assert not unix.keepalive
