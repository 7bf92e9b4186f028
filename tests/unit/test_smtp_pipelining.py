"""Submission answers pipelined commands in order when the database answers later (RFC 2920),
and every reply carries an enhanced status code (RFC 2034)."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ygbridge.addressing import domain_for
from ygbridge.intake import Intake
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.mailhub import MailHub
from ygbridge.smtp.connection import ServerSettings
from ygbridge.smtp.submission import SubmissionFactory, SubmissionRealm
from ygbridge.store.models import Message, database
from ygbridge.testing.store import make_user, memory_database
from ygbridge.tlspolicy import ClientTLS

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
ALICE, CAROL = f"alice@{domain_for(NODE)}", f"carol@{domain_for(NODE)}"
AUTH = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pw") + b"\r\n"
ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


class LaterDB:
    """DBThread's ``run``, answered only when the test says so (as a busy DB thread would)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Deferred[Any], Callable[[], Any]]] = []

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.waiting.append((done, lambda: fn(*args, **kwargs)))
        return done

    def answer(self) -> None:
        while self.waiting:
            done, work = self.waiting.pop(0)
            done.callback(work())


@pytest.fixture(autouse=True)
def db() -> Iterator[None]:
    memory_database()
    make_user("alice")
    make_user("carol")
    yield
    database.close()


class Session:
    def __init__(self, user_cache: float = 0.0) -> None:
        self.db = LaterDB()
        self.clock = clock = Clock()
        intake = Intake(
            clock,
            self.db,  # type: ignore[arg-type]
            MailHub(self.db, clock),  # type: ignore[arg-type]
            lambda: NODE,
            lambda *_: None,
            user_cache=user_cache,
        )
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(b"alice", b"pw")
        portal = Portal(SubmissionRealm(lambda: NODE, intake), [checker])
        settings = ServerSettings(clock, Limits(), 10_000)
        tls = ClientTLS(CertificateOptions())
        factory = SubmissionFactory(portal, LoginGate(clock, Limits()), lambda: NODE, tls, settings)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv6Address("TCP", "::1", 40000))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return self.replies()

    def replies(self) -> list[bytes]:
        value = self.transport.value()
        self.transport.clear()
        return value.splitlines()


def test_pipelined_commands_wait_for_the_database_and_answer_in_order() -> None:
    session = Session()
    session.send(b"EHLO client\r\n" + AUTH)
    replies = session.send(
        f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{CAROL}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode()
    )
    assert replies == [b"250 2.1.0 Sender OK"]  # the first RCPT asks the database who carol is
    session.db.answer()
    assert session.replies() == [b"250 2.1.5 Recipient OK", b"250 2.1.5 Recipient OK", b"354 Continue"]
    session.send(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert session.replies() == []  # the commit is still running: QUIT waits for it
    session.db.answer()
    assert session.replies() == [b"250 2.0.0 Message accepted", b"221 2.0.0 See you later"]
    assert Message.select().count() == 2


def test_a_bdat_chunk_behind_a_waiting_rcpt_stays_unread_until_its_turn() -> None:
    session = Session()
    session.send(b"EHLO client\r\n" + AUTH)
    body = b"Subject: hi\r\n\r\nRSET\r\nQUIT\r\n"
    envelope = f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{CAROL}>\r\nBDAT {len(body)} LAST\r\n".encode()
    assert session.send(envelope + body + b"NOOP\r\n") == [b"250 2.1.0 Sender OK"]
    session.db.answer()  # carol exists; then the chunk is read and committed, then NOOP
    assert session.replies() == [b"250 2.1.5 Recipient OK", b"250 2.0.0 Message accepted", b"250 2.0.0 OK"]
    assert [bytes(m.body).endswith(body) for m in Message.select()] == [True]


def test_a_known_recipient_is_not_looked_up_again_within_the_user_cache() -> None:
    session = Session(user_cache=10)
    session.send(b"EHLO client\r\n" + AUTH)
    envelope = f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{CAROL}>\r\nRSET\r\n".encode()
    assert session.send(envelope) == [b"250 2.1.0 Sender OK"]
    session.db.answer()
    assert session.replies() == [b"250 2.1.5 Recipient OK", b"250 2.0.0 OK"]
    session.clock.advance(9.9)
    assert session.send(envelope) == [b"250 2.1.0 Sender OK", b"250 2.1.5 Recipient OK", b"250 2.0.0 OK"]
    assert session.db.waiting == []  # answered from memory
    session.clock.advance(0.1)
    assert session.send(envelope) == [b"250 2.1.0 Sender OK"]  # looked up again
    session.db.answer()
    assert session.replies() == [b"250 2.1.5 Recipient OK", b"250 2.0.0 OK"]


def test_every_reply_has_an_enhanced_status_code() -> None:
    session = Session()
    greeting = session.replies()
    assert greeting[0].startswith(b"220 ")  # the greeting and EHLO are exempt
    replies = session.send(b"EHLO client\r\n")
    assert replies[0].startswith(b"250-") and not ENHANCED.match(replies[0])
    lines = [b"NOOP", b"VRFY alice", b"RSET", b"FROB", b"MAIL FROM:<nobody>", b"AUTH PLAIN AGFsaWNlAHg="]
    lines += [b"AUTH CRAM-MD5", AUTH.rstrip(), b"AUTH PLAIN", b"QUIT"]
    replies = session.send(b"".join(line + b"\r\n" for line in lines))
    for _ in lines:  # the login gate answers each failed AUTH after a delay
        session.clock.advance(10)
        replies += session.replies()
    assert len(replies) == len(lines), replies
    assert all(ENHANCED.match(reply) for reply in replies), replies
