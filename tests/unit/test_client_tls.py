"""STARTTLS, implicit TLS and the plaintext-password policy on submission and IMAP (StringTransport)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator

import pytest
from smtpsession import Session
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, implementer

from ygbridge.imap.mailbox import ImapRealm
from ygbridge.imap.tls import TLSImapFactory
from ygbridge.intake import Intake
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.mailhub import MailHub
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.submission import SubmissionFactory, SubmissionRealm
from ygbridge.store.models import Message, database
from ygbridge.testing.store import ImmediateDB, make_user, memory_database
from ygbridge.tlspolicy import ClientTLS

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
CONTEXT = CertificateOptions()
LAN, LOOPBACK = "192.168.1.10", "127.0.0.1"
SMTP_PLAIN = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pw")


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport that can start TLS: it records the context, then counts as encrypted."""

    started_with: object = None

    def startTLS(self, contextFactory: object) -> None:
        self.started_with = contextFactory
        alsoProvides(self, ISSLTransport)


@pytest.fixture(autouse=True)
def db() -> Iterator[None]:
    memory_database()
    make_user("alice")
    yield
    database.close()


def _portal(realm: object) -> Portal:
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    checker.addUser(b"alice", b"pw")
    return Portal(realm, [checker])  # type: ignore[arg-type]


class Connection(Session):
    """A protocol on a TLS-capable (or already encrypted) transport from ``peer``."""

    def __init__(self, factory: object, peer: str, implicit_tls: bool = False) -> None:
        transport = TLSStringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        if implicit_tls:
            alsoProvides(transport, ISSLTransport)
        protocol = factory.buildProtocol(None)  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        super().__init__(protocol, transport)


def submission(peer: str, allow_plaintext: bool = False, implicit_tls: bool = False) -> Connection:
    clock = Clock()
    intake = Intake(clock, ImmediateDB(), MailHub(ImmediateDB(), clock), lambda: NODE, lambda *_: None)
    portal = _portal(SubmissionRealm(lambda: NODE, intake))
    settings = ServerSettings(clock, Limits(), 1000)
    tls = ClientTLS(CONTEXT, allow_plaintext)
    factory = SubmissionFactory(portal, LoginGate(clock, Limits()), lambda: NODE, tls, settings)
    return Connection(factory, peer, implicit_tls)


def imap(peer: str, allow_plaintext: bool = False, implicit_tls: bool = False) -> Connection:
    clock = Clock()
    portal = _portal(ImapRealm(MailHub(ImmediateDB(), clock)))
    factory = TLSImapFactory(
        portal, clock, ClientTLS(CONTEXT, allow_plaintext), limits=Limits(), max_message_size=1000
    )
    return Connection(factory, peer, implicit_tls)


def _extensions(reply: bytes) -> set[bytes]:
    return {line[4:] for line in reply.splitlines()[1:]}


# Submission


def test_submission_on_lan_offers_starttls_and_hides_auth_until_tls() -> None:
    connection = submission(LAN)
    before = _extensions(connection.send(b"EHLO client\r\n"))
    assert b"STARTTLS" in before and not any(e.startswith(b"AUTH") for e in before)
    assert connection.send(SMTP_PLAIN + b"\r\n").startswith(b"538 5.7.11 ")
    assert connection.send(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert connection.transport.started_with is CONTEXT
    after = _extensions(connection.send(b"EHLO client\r\n"))
    assert b"STARTTLS" not in after and b"AUTH PLAIN LOGIN" in after
    assert {b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"SIZE 1000"} <= after
    assert connection.send(SMTP_PLAIN + b"\r\n").startswith(b"235 2.7.0 ")


def test_submission_on_loopback_takes_passwords_in_clear() -> None:
    connection = submission(LOOPBACK)
    extensions = _extensions(connection.send(b"EHLO client\r\n"))
    assert {b"STARTTLS", b"AUTH PLAIN LOGIN"} <= extensions
    assert connection.send(SMTP_PLAIN + b"\r\n").startswith(b"235 ")
    assert connection.send(b"STARTTLS\r\n").startswith(b"503 5.5.1 ")  # after AUTH: too late


def test_submission_allow_plaintext_takes_passwords_anywhere() -> None:
    connection = submission(LAN, allow_plaintext=True)
    assert b"AUTH PLAIN LOGIN" in _extensions(connection.send(b"EHLO client\r\n"))
    assert connection.send(SMTP_PLAIN + b"\r\n").startswith(b"235 ")


def test_submission_inside_implicit_tls_takes_passwords_and_offers_no_starttls() -> None:
    connection = submission(LAN, implicit_tls=True)
    extensions = _extensions(connection.send(b"EHLO client\r\n"))
    assert b"STARTTLS" not in extensions and b"AUTH PLAIN LOGIN" in extensions
    assert connection.send(b"STARTTLS\r\n").startswith(b"503 5.5.1 ")
    assert connection.send(SMTP_PLAIN + b"\r\n").startswith(b"235 ")


def test_submission_drops_commands_pipelined_in_clear_after_starttls() -> None:
    connection = submission(LAN)
    connection.send(b"EHLO client\r\n")
    reply = connection.send(b"STARTTLS\r\n" + SMTP_PLAIN + b"\r\nMAIL FROM:<x@y>\r\nRSET")
    assert reply == b"220 2.0.0 Ready to start TLS\r\n"
    assert connection.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"  # what came over TLS counts
    assert connection.send(b"MAIL FROM:<x@y>\r\n").startswith(b"530 5.7.0 ")  # not logged in


def _submit(connection: Connection) -> str:
    """Send alice a message from alice (after EHLO and AUTH); the ``with`` of its ``Received:``."""
    address = f"alice@[IPv6:{NODE}]".encode()
    reply = connection.send(
        b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\nSubject: hi\r\n\r\nhi\r\n.\r\n" % (address, address)
    )
    assert reply.endswith(b"250 2.0.0 Message accepted\r\n"), reply
    received = Message.select().get().body.split(b"\r\n\r\n")[0]
    return received.split(b" with ", 1)[1].split(b";", 1)[0].decode()


@pytest.mark.parametrize(
    ("peer", "starttls", "implicit_tls", "protocol"),
    [(LOOPBACK, False, False, "ESMTPA"), (LAN, True, False, "ESMTPSA"), (LAN, False, True, "ESMTPSA")],
)
def test_the_received_line_says_whether_the_submission_ran_over_tls(
    peer: str, starttls: bool, implicit_tls: bool, protocol: str
) -> None:
    """RFC 3848 (and RFC 8314 section 4.3 for implicit TLS): ESMTPSA over TLS, ESMTPA without."""
    connection = submission(peer, implicit_tls=implicit_tls)
    if starttls:
        connection.send(b"EHLO client\r\nSTARTTLS\r\n")
    assert connection.send(b"EHLO client\r\n" + SMTP_PLAIN + b"\r\n").endswith(
        b"235 2.7.0 Authentication successful\r\n"
    )
    assert _submit(connection) == protocol


# IMAP


def _capabilities(connection: Connection) -> set[bytes]:
    reply = connection.send(b"c CAPABILITY\r\n")
    assert reply.endswith(b"c OK CAPABILITY completed\r\n"), reply
    return set(reply.splitlines()[0].split()[2:])


def test_imap_on_lan_refuses_passwords_until_starttls() -> None:
    connection = imap(LAN)
    assert b"LOGINDISABLED" in connection.greeting
    caps = _capabilities(connection)
    assert {b"STARTTLS", b"LOGINDISABLED"} <= caps and not any(c.startswith(b"AUTH=") for c in caps)
    assert connection.send(b"a LOGIN alice pw\r\n").startswith(b"a NO [PRIVACYREQUIRED] ")
    assert connection.send(b"b AUTHENTICATE PLAIN\r\n").startswith(b"b NO [PRIVACYREQUIRED] ")
    assert connection.send(b"t STARTTLS\r\n") == b"t OK Begin TLS negotiation now\r\n"
    assert connection.transport.started_with is CONTEXT
    caps = _capabilities(connection)
    assert b"AUTH=PLAIN" in caps and not caps & {b"STARTTLS", b"LOGINDISABLED"}
    assert connection.send(b"l LOGIN alice pw\r\n").startswith(b"l OK ")


def test_imap_on_loopback_takes_login_in_clear_but_offers_starttls() -> None:
    connection = imap(LOOPBACK)
    caps = _capabilities(connection)
    assert {b"STARTTLS", b"AUTH=PLAIN"} <= caps and b"LOGINDISABLED" not in caps
    login = connection.send(b"a LOGIN alice pw\r\n")
    assert login.startswith(b"a OK ") and b"STARTTLS" not in login  # no longer valid after login
    assert b"STARTTLS" not in _capabilities(connection)


def test_imap_allow_plaintext_takes_login_anywhere() -> None:
    connection = imap(LAN, allow_plaintext=True)
    assert b"LOGINDISABLED" not in _capabilities(connection)
    assert connection.send(b"a LOGIN alice pw\r\n").startswith(b"a OK ")


def test_imap_inside_implicit_tls() -> None:
    connection = imap(LAN, implicit_tls=True)
    caps = _capabilities(connection)
    assert b"AUTH=PLAIN" in caps and not caps & {b"STARTTLS", b"LOGINDISABLED"}
    assert connection.send(b"t STARTTLS\r\n").startswith(b"t NO ")
    assert connection.transport.started_with is None
    assert connection.send(b"a LOGIN alice pw\r\n").startswith(b"a OK ")


def test_imap_drops_commands_pipelined_in_clear_after_starttls() -> None:
    connection = imap(LAN)
    reply = connection.send(b"t STARTTLS\r\na LOGIN alice pw\r\n")
    assert reply == b"t OK Begin TLS negotiation now\r\n"
    assert connection.protocol.state == "unauth"
