"""Submission and mesh SMTP servers over a fresh in-memory store, driven through StringTransport."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv6Address as TwistedIPv6
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ygbridge.addressing import domain_for
from ygbridge.intake import Intake
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.mailhub import MailHub
from ygbridge.quota import DiskFloor, HourlyQuota
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.mesh import MeshFactory
from ygbridge.smtp.protocol import SMTPServerFactory
from ygbridge.smtp.submission import SubmissionFactory, SubmissionRealm
from ygbridge.testing.store import ImmediateDB, make_user, memory_database
from ygbridge.tlspolicy import ClientTLS

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
PEER = ipaddress.IPv6Address("207:c9a6:2274:54f4:63df:eb39:2d22:3d1")
SUBNET_HOST = ipaddress.IPv6Address("307:c9a6:2274:54f4::1")
LOOPBACK = ipaddress.IPv6Address("::1")
ME = f"alice@{domain_for(NODE)}"
BOB = f"bob@{domain_for(PEER)}"
#: AUTH PLAIN of alice with password pw.
LOGIN = b"AUTH PLAIN AGFsaWNlAHB3"


class Node:
    """Submission and mesh factories over an in-memory store, with the queue pokes recorded."""

    def __init__(
        self,
        limits: Limits | None = None,
        max_size: int = 1000,
        free_disk: int | None = None,
        db: Any = None,
        user_cache: float = 0.0,
    ) -> None:
        self.database = memory_database()
        for name in ("alice", "carol"):
            make_user(name)
        self.clock = Clock()
        self.clock.advance(1000)
        self.limits = limits or Limits()
        self.db = db or ImmediateDB()
        self.poked: list[str] = []
        mailhub = MailHub(self.db, self.clock)
        self.intake = Intake(
            self.clock,
            self.db,
            mailhub,
            lambda: NODE,
            lambda d, _: self.poked.append(d),
            user_cache=user_cache,
        )
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(b"alice", b"pw")
        portal = Portal(SubmissionRealm(lambda: NODE, self.intake), [checker])
        self.free_disk = free_disk
        disk = None if free_disk is None else DiskFloor(Path("/db"), self.limits.min_free_disk, self._statvfs)
        settings = ServerSettings(self.clock, self.limits, max_size, disk)
        tls = ClientTLS(CertificateOptions())
        self.logins = LoginGate(self.clock, self.limits)
        self.submission = SubmissionFactory(portal, self.logins, lambda: NODE, tls, settings)
        self.connected: list[str] = []
        quota = HourlyQuota(self.clock, self.limits.mesh_messages_per_hour, self.limits.mesh_bytes_per_hour)
        self.mesh = MeshFactory(NODE, self.intake, quota, self.connected.append, settings)

    def _statvfs(self, path: Path) -> os.statvfs_result:
        assert self.free_disk is not None
        return free(self.free_disk)

    def connect(self, factory: SMTPServerFactory, source: ipaddress.IPv6Address) -> Session:
        protocol = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=TwistedIPv6("TCP", source.compressed, 40000))
        protocol.makeConnection(transport)
        return Session(protocol, transport)

    def submit(self, source: ipaddress.IPv6Address = LOOPBACK) -> Session:
        """A submission session, logged in as alice."""
        session = self.connect(self.submission, source)
        session.say(b"EHLO client")
        assert session.say(LOGIN).startswith(b"235")
        return session


def free(octets: int) -> os.statvfs_result:
    """A statvfs result with ``octets`` available (1-byte fragments)."""
    return os.statvfs_result((1, 1, octets, octets, octets, 0, 0, 0, 0, 255))


def limits(**values: Any) -> Limits:
    return dataclasses.replace(Limits(), **values)


class Session:
    def __init__(self, protocol: Any, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.greeting = self.read()

    def read(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        return self.read()

    def say(self, *lines: bytes) -> bytes:
        for line in lines:
            self.protocol.dataReceived(line + b"\r\n")
        return self.read()

    def code(self, line: bytes) -> int:
        return int(self.say(line).splitlines()[-1][:3])

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)
