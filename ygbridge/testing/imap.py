"""An IMAP server over the store, and clients talking to it through StringTransport.

Test modules make fixtures of these: ``lab = pytest.fixture(running_lab, name="lab")``; the
benchmarks build their servers with :func:`imap_factory` too.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ygbridge.imap.mailbox import ImapRealm
from ygbridge.imap.server import ImapFactory
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.mailhub import MailHub
from ygbridge.testing.deferreds import result_of
from ygbridge.testing.store import CREATED, ImmediateDB, alice_database

#: The clock's time when an ImapLab starts.
NOW = CREATED + 100
MAX_MESSAGE_SIZE = 100_000
#: alice's IMAP password.
PASSWORD = b"secret"
#: Mixed-case and repeated header names, 8-bit UTF-8 in a header and the body.
MESSAGE = (
    b"Received: from a\r\n\tby b\r\n"
    b"FROM: Alice <alice@example.meship>\r\n"
    b"subject: Gr\xc3\xbc\xc3\x9fe\r\n"
    b"Received: from c\r\n"
    b"Message-ID: <1@example.meship>\r\n"
    b"\r\n"
    b"Hall\xc3\xb6\r\nline two\r\n"
)


class Client:
    """One IMAP connection: bytes in, the bytes the server wrote out."""

    def __init__(self, factory: ImapFactory, transport: StringTransport | None = None) -> None:
        self.factory = factory
        self.server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = transport or StringTransport()
        self.server.makeConnection(self.transport)
        self.greeting = self.received()

    def send(self, data: bytes) -> bytes:
        """What the server answers to ``data`` (after anything it wrote unasked before)."""
        self.server.dataReceived(data)
        return self.received()

    def received(self) -> bytes:
        """What the server wrote since the last call."""
        data: bytes = self.transport.value()  # StringTransport.value is unannotated
        self.transport.clear()
        return data

    def login(self) -> None:
        """LOGIN as alice, checking that it succeeds."""
        assert self.send(b"a LOGIN alice secret\r\n").startswith(b"a OK [CAPABILITY IMAP4rev1 ")

    def select(self, mailbox: bytes = b"INBOX", recent: bool = False) -> None:
        """Log in and SELECT; unless ``recent``, another session selected the mailbox just before,
        so that no message already there is \\Recent in this one (RFC 3501 2.3.2)."""
        if not recent:
            other = Client(self.factory)
            other.select(mailbox, recent=True)
            other.disconnect()
        self.login()
        assert self.send(b"s SELECT " + mailbox + b"\r\n").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")

    def append(self, message: bytes, mailbox: bytes = b"INBOX", extra: bytes = b"") -> bytes:
        """APPEND ``message`` by a synchronising literal; the server's answer after the literal."""
        assert self.send(b"p APPEND %b%b {%d}\r\n" % (mailbox, extra, len(message))) == (
            b"+ Ready for %d octets of data\r\n" % len(message)
        )
        return self.send(message + b"\r\n")

    def disconnect(self) -> None:
        """The client went away: the server sees its connection lost."""
        self.server.connectionLost(Failure(ConnectionDone()))


def imap_factory(
    mailhub: MailHub,
    clock: IReactorTime,
    checker: InMemoryUsernamePasswordDatabaseDontUse,
    *,
    limits: Limits | None = None,
    max_message_size: int = MAX_MESSAGE_SIZE,
    logins: LoginGate | None = None,
) -> ImapFactory:
    """The IMAP server factory over ``mailhub``, its users those of ``checker`` (whose avatar ids
    are bytes: add them with bytes names)."""
    portal = Portal(ImapRealm(mailhub), [checker])
    return ImapFactory(
        portal, clock, limits=limits or Limits(), max_message_size=max_message_size, logins=logins
    )


def alice_checker(password: bytes = PASSWORD) -> InMemoryUsernamePasswordDatabaseDontUse:
    """A credentials checker that knows user alice with ``password``."""
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    checker.addUser(b"alice", password)
    return checker


class ImapLab:
    """User alice (password ``secret``) on the current database, a MailHub running its store
    calls at once on a Clock set to ``now``, and the IMAP server factory."""

    def __init__(
        self,
        limits: Limits | None = None,
        logins: LoginGate | None = None,
        *,
        now: float = NOW,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(now)
        self.mailhub = MailHub(ImmediateDB(), self.clock)
        self.checker = alice_checker()
        self.factory = imap_factory(
            self.mailhub,
            self.clock,
            self.checker,
            limits=limits,
            max_message_size=max_message_size,
            logins=logins,
        )

    def client(self) -> Client:
        """A new connection to the server."""
        return Client(self.factory)

    def deliver(self, body: bytes = MESSAGE, **kwargs: object) -> int | None:
        """Deliver to alice as the mesh would; returns the UID."""
        delivered = self.mailhub.deliver("alice", body, message_id=None, sender_node=None, **kwargs)  # type: ignore[arg-type]
        return result_of(delivered)


def running_lab(store_backend: str) -> Iterator[ImapLab]:
    """A fixture body: an ImapLab on a fresh database with alice, for the length of a test."""
    for _ in alice_database(store_backend):
        yield ImapLab()


def first_client(lab: ImapLab) -> Client:
    """A fixture body: the lab's first client."""
    return lab.client()
