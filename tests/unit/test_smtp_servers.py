"""Submission and mesh SMTP servers, driven line by line through StringTransport."""

import ipaddress

import pytest
from smtpsession import BOB, ME, NODE, PEER, SUBNET_HOST, Node, Session

from ygbridge.addressing import domain_for
from ygbridge.store import queue
from ygbridge.store.models import Message

BODY = (
    f"From: Alice <{ME}>\r\n".encode()
    + b"Message-ID: <m1@x>\r\nSubject: Hi \xc3\xa9\r\n\r\nline\r\n..dot\r\n"
)
FROM_BOB = BODY.replace(ME.encode(), BOB.encode())


def _trace(stored: bytes, original: bytes) -> list[bytes]:
    """The names of the trace fields a node put on top of ``original``."""
    assert stored.endswith(original)
    return [line.split(b":")[0] for line in stored[: -len(original)].split(b"\r\n") if line[:1].isalpha()]


@pytest.fixture
def node() -> Node:
    return Node()


def _login(session: Session) -> None:
    session.say(b"EHLO client")
    assert session.say(b"AUTH PLAIN AGFsaWNlAHB3").startswith(b"235")  # \0alice\0pw


def test_ehlo_advertises_extensions(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    reply = session.say(b"EHLO client")
    for extension in (b"AUTH LOGIN PLAIN", b"SIZE 1000", b"8BITMIME", b"PIPELINING", b"ENHANCEDSTATUSCODES"):
        assert extension in reply.replace(b"AUTH PLAIN LOGIN", b"AUTH LOGIN PLAIN")


def test_submission_requires_auth(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    session.say(b"EHLO client")
    reply = session.say(f"MAIL FROM:<{ME}>".encode())
    assert reply.startswith(b"530 5.7.0")
    assert session.say(b"AUTH PLAIN AGFsaWNlAHdyb25n") == b""  # a failure is answered after a delay
    node.clock.advance(10)
    assert session.read().startswith(b"535")


def test_submission_sends_only_as_yourself(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    _login(session)
    assert session.say(f"MAIL FROM:<carol@{domain_for(NODE)}>".encode()).startswith(b"553 5.7.1")
    assert session.code(f"MAIL FROM:<alice@[IPv6:{NODE}]>".encode()) == 250


@pytest.mark.parametrize(
    ("recipient", "code"),
    [("bob@example.com", b"553"), ("bob@[IPv6:fd00::1]", b"553"), (f"dave@{domain_for(NODE)}", b"550")],
)
def test_submission_refuses_bad_recipients(node: Node, recipient: str, code: bytes) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    _login(session)
    session.say(f"MAIL FROM:<{ME}>".encode())
    assert session.say(f"RCPT TO:<{recipient}>".encode()).startswith(code)


def test_submission_queues_remote_and_delivers_local_before_250(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    _login(session)
    session.say(f"MAIL FROM:<{ME}>".encode())
    for rcpt in (BOB, f"bob@[IPv6:{PEER}]", ME, f"carol@[IPv6:{NODE}]"):
        assert session.code(f"RCPT TO:<{rcpt}>".encode()) == 250
    assert session.code(b"DATA") == 354
    reply = session.say(*BODY.replace(b"..dot", b"...dot").split(b"\r\n")[:-1], b".")
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, node.clock.seconds())
    assert queued is not None and _trace(queued.body, BODY) == [b"Received"]
    assert [r for _, r in queued.recipients] == [BOB]  # both forms name one mailbox
    assert node.poked == [PEER.compressed]
    stored = {m.mailbox.user.name: bytes(m.body) for m in Message.select()}
    assert stored["alice"] == stored["carol"]
    assert _trace(stored["alice"], BODY) == [b"Return-Path", b"Received"]


def test_size_limit_enforced_before_and_during_data(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    _login(session)
    assert session.say(f"MAIL FROM:<{ME}> SIZE=5000".encode()).startswith(b"552 5.3.4")
    session.say(f"MAIL FROM:<{ME}>".encode(), f"RCPT TO:<{BOB}>".encode(), b"DATA")
    assert session.say(b"x" * 1200, b".").startswith(b"552 5.3.4")
    assert queue.summary() == []


def test_mesh_binds_sender_to_source_address(node: Node) -> None:
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer")
    assert session.say(f"MAIL FROM:<mallory@{domain_for(SUBNET_HOST)}>".encode()).startswith(b"550 5.7.1")
    assert session.say(f"MAIL FROM:<x@[IPv6:{NODE}]>".encode()).startswith(b"550 5.7.1")
    assert session.code(f"MAIL FROM:<{BOB}>".encode()) == 250
    assert node.connected == [PEER.compressed]  # a connecting node is reachable: try its queue


def test_mesh_refuses_subnet_sources_and_relaying(node: Node) -> None:
    session = node.connect(node.mesh, SUBNET_HOST)
    session.say(b"EHLO host")
    assert session.say(b"MAIL FROM:<>").startswith(b"550 5.7.1")
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer", b"MAIL FROM:<>")
    assert session.say(f"RCPT TO:<{BOB}>".encode()).startswith(b"550 5.7.1")
    assert session.say(f"RCPT TO:<nobody@{domain_for(NODE)}>".encode()).startswith(b"550 5.1.1")


def test_mesh_delivery_is_stored_once_per_mailbox(node: Node) -> None:
    for _ in range(2):  # a retry after a lost 250
        session = node.connect(node.mesh, PEER)
        session.say(b"EHLO peer", f"MAIL FROM:<{BOB}>".encode(), f"RCPT TO:<{ME}>".encode(), b"DATA")
        assert session.say(*FROM_BOB.replace(b"..dot", b"...dot").split(b"\r\n")[:-1], b".").startswith(
            b"250"
        )
    [stored] = [bytes(m.body) for m in Message.select()]
    assert _trace(stored, FROM_BOB) == [b"Return-Path", b"Received"]
    assert stored.startswith(f"Return-Path: <{BOB}>\r\n".encode())


def test_mesh_refuses_a_visible_sender_of_another_node(node: Node) -> None:
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer", f"MAIL FROM:<{BOB}>".encode(), f"RCPT TO:<{ME}>".encode(), b"DATA")
    reply = session.say(*BODY.split(b"\r\n")[:-1], b".")
    assert reply.startswith(b"550 5.7.1 From: alice@"), reply
    assert Message.select().count() == 0


def test_submission_refuses_a_visible_sender_other_than_the_user(node: Node) -> None:
    session = node.connect(node.submission, ipaddress.IPv6Address("::1"))
    _login(session)
    session.say(f"MAIL FROM:<{ME}>".encode(), f"RCPT TO:<{BOB}>".encode(), b"DATA")
    reply = session.say(*FROM_BOB.split(b"\r\n")[:-1], b".")
    assert reply.startswith(b"550 5.7.1 From: bob@"), reply
    assert queue.summary() == []
