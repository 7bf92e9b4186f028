"""DSN (RFC 3461) and SMTPUTF8 (RFC 6531/6532) on both SMTP ports, through StringTransport."""

from __future__ import annotations

import pytest
from smtpsession import BOB, ME, NODE, PEER, Node, Session

from ygbridge.addressing import domain_for
from ygbridge.notify import DELAY, FAILURE, NEVER, SUCCESS, DsnRequest, Notify
from ygbridge.store import queue
from ygbridge.store.models import Message

CAROL = f"carol@{domain_for(NODE)}"
DAVE = f"dave@{domain_for(PEER)}"
FROM_BOB = f"From: {BOB}\r\n".encode()
FROM_ME = f"From: {ME}\r\n".encode()


def _mesh(node: Node) -> Session:
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer")
    return session


def _send(session: Session, mail: str, rcpts: list[str], body: bytes) -> bytes:
    assert session.say(mail.encode()).startswith(b"250 2.1.0"), mail
    for rcpt in rcpts:
        assert session.say(rcpt.encode()).startswith(b"250 2.1.5"), rcpt
    assert session.say(b"DATA").startswith(b"354")
    return session.send(body + b"\r\n.\r\n")


def _stored() -> list[bytes]:
    return [bytes(m.body) for m in Message.select().order_by(Message.id)]


def _reports() -> list[bytes]:
    return [body for body in _stored() if b"multipart/report" in body]


# Capabilities


@pytest.mark.parametrize("port", ["mesh", "submission"])
def test_both_ports_advertise_dsn_and_smtputf8(port: str) -> None:
    node = Node()
    session = node.connect(node.mesh if port == "mesh" else node.submission, PEER)
    lines = session.say(b"EHLO client").splitlines()
    assert b"250-DSN" in lines and (b"250-SMTPUTF8" in lines or b"250 SMTPUTF8" in lines)


# DSN parameters: syntax


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        (" RET=FULL", b"250 2.1.0"),
        (" RET=hdrs", b"250 2.1.0"),
        (" ENVID=QQ+2B1", b"250 2.1.0"),
        (" RET=HDRS ENVID=x SIZE=10 SMTPUTF8 BODY=8BITMIME", b"250 2.1.0"),
        (" RET=SOME", b"501 5.5.4 RET must be FULL or HDRS"),
        (" RET", b"501 5.5.4"),
        (" RET=FULL RET=HDRS", b"501 5.5.4 Parameter RET given twice"),
        (" ENVID", b"501 5.5.4"),
        (" ENVID=a+zz", b"501 5.5.4"),  # not xtext: "+" must be followed by two upper-case hex digits
        (" ENVID=a+0Db", b"501 5.5.4"),  # a control character, bound for a report's header
        (" ENVID=" + "e" * 101, b"501 5.5.4 ENVID must be 1 to 100"),
        (" ENVID=" + "e" * 100, b"250 2.1.0"),
        (" SMTPUTF8=yes", b"501 5.5.4 SMTPUTF8 takes no value"),
        (" NOTIFY=SUCCESS", b"555 5.5.4 Parameter NOTIFY"),  # a RCPT parameter
    ],
)
def test_mail_dsn_and_smtputf8_parameters(params: str, reply: bytes) -> None:
    assert _mesh(Node()).say(f"MAIL FROM:<{BOB}>{params}".encode()).startswith(reply)


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        (" NOTIFY=SUCCESS,FAILURE,DELAY", b"250 2.1.5"),
        (" notify=never", b"250 2.1.5"),
        (f" NOTIFY=FAILURE ORCPT=rfc822;{ME}", b"250 2.1.5"),
        (" ORCPT=rfc822;a+2Bb+40c", b"250 2.1.5"),
        (" NOTIFY=NEVER,SUCCESS", b"501 5.5.4 NOTIFY=NEVER cannot be combined"),
        (" NOTIFY=SOMETIMES", b"501 5.5.4 NOTIFY takes NEVER"),
        (" NOTIFY=", b"501 5.5.4"),
        (" NOTIFY", b"501 5.5.4"),
        (" NOTIFY=DELAY NOTIFY=FAILURE", b"501 5.5.4 Parameter NOTIFY given twice"),
        (" ORCPT=rfc822", b"501 5.5.4 ORCPT must be addr-type;xtext"),
        (" ORCPT=;x", b"501 5.5.4"),
        (" ORCPT=rfc822;a+0Ab", b"501 5.5.4"),
        (" ORCPT=rfc822;" + "o" * 501, b"501 5.5.4 Bad parameter syntax"),
        (" RET=FULL", b"555 5.5.4 Parameter RET"),  # a MAIL parameter
        (" SMTPUTF8", b"555 5.5.4 Parameter SMTPUTF8"),
        (" X-FOO=1", b"555 5.5.4 Parameter X-FOO"),
    ],
)
def test_rcpt_dsn_parameters(params: str, reply: bytes) -> None:
    session = _mesh(Node())
    session.say(f"MAIL FROM:<{BOB}>".encode())
    assert session.say(f"RCPT TO:<{ME}>{params}".encode()).startswith(reply)


def test_submission_parses_the_same_dsn_parameters() -> None:
    session = Node().submit()
    assert session.say(f"MAIL FROM:<{ME}> RET=BOTH".encode()).startswith(b"501 5.5.4")
    assert session.say(f"MAIL FROM:<{ME}> RET=HDRS ENVID=e1".encode()).startswith(b"250 2.1.0")
    assert session.say(f"RCPT TO:<{DAVE}> NOTIFY=NEVER,DELAY".encode()).startswith(b"501 5.5.4")
    assert session.say(f"RCPT TO:<{DAVE}> NOTIFY=DELAY".encode()).startswith(b"250 2.1.5")


# DSN requests reach the store and the queue


def test_submission_queues_the_request_for_the_next_hop() -> None:
    node = Node()
    session = node.submit()
    reply = _send(
        session,
        f"MAIL FROM:<{ME}> RET=HDRS ENVID=env+2B1",
        [f"RCPT TO:<{DAVE}> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;d+40x", f"RCPT TO:<{BOB}>"],
        FROM_ME + b"Subject: s\r\n\r\nhi",
    )
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, 1e10)
    assert queued is not None
    assert queued.dsn == DsnRequest(
        "HDRS", "env+1", {DAVE: Notify(frozenset({SUCCESS, DELAY}), "rfc822;d@x")}
    )
    assert queued.dsn.notify(BOB) == Notify()  # no request: the default


def test_submission_to_a_local_user_with_notify_success_gets_a_delivered_report() -> None:
    node = Node()
    session = node.submit()
    reply = _send(
        session,
        f"MAIL FROM:<{ME}> ENVID=E-7",
        [f"RCPT TO:<{CAROL}> NOTIFY=SUCCESS ORCPT=rfc822;{CAROL}", f"RCPT TO:<{ME}> NOTIFY=FAILURE"],
        FROM_ME + b"Subject: s\r\n\r\nhi",
    )
    assert reply.startswith(b"250 2.0.0")
    [report] = _reports()  # for carol only: alice asked to hear of failures
    assert b"Action: delivered" in report and b"Original-Envelope-Id: E-7\r\n" in report
    assert f"Original-Recipient: rfc822; {CAROL}\r\nFinal-Recipient: rfc822; {CAROL}".encode() in report


def test_mesh_receipt_with_notify_success_sends_the_report_back() -> None:
    node = Node()
    session = _mesh(node)
    reply = _send(
        session,
        f"MAIL FROM:<{BOB}> ENVID=e9",
        [f"RCPT TO:<{ME}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{ME}"],
        FROM_BOB + b"Subject: s\r\n\r\nhi",
    )
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, 1e10)
    assert queued is not None and queued.sender == "" and [r for _, r in queued.recipients] == [BOB]
    assert b"Action: delivered" in queued.body and b"Original-Envelope-Id: e9" in queued.body


@pytest.mark.parametrize("notify", ["", " NOTIFY=FAILURE", " NOTIFY=NEVER"])
def test_mesh_receipt_without_notify_success_reports_nothing(notify: str) -> None:
    node = Node()
    reply = _send(_mesh(node), f"MAIL FROM:<{BOB}>", [f"RCPT TO:<{ME}>{notify}"], FROM_BOB + b"\r\nhi")
    assert reply.startswith(b"250 2.0.0")
    assert queue.next_due(PEER.compressed, 1e10, force=True) is None
    assert len(_stored()) == 1


def test_rset_clears_the_dsn_request() -> None:
    node = Node()
    session = node.submit()
    assert session.say(f"MAIL FROM:<{ME}> RET=HDRS ENVID=gone".encode()).startswith(b"250")
    assert session.say(f"RCPT TO:<{DAVE}> NOTIFY=SUCCESS".encode()).startswith(b"250")
    assert session.say(b"RSET").startswith(b"250")
    reply = _send(session, f"MAIL FROM:<{ME}>", [f"RCPT TO:<{DAVE}>"], FROM_ME + b"\r\nhi")
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, 1e10)
    assert queued is not None and queued.dsn == DsnRequest()


def test_a_recipient_given_twice_keeps_its_last_request() -> None:
    node = Node()
    reply = _send(
        node.submit(),
        f"MAIL FROM:<{ME}>",
        [f"RCPT TO:<{DAVE}> NOTIFY=SUCCESS", f"RCPT TO:<{DAVE}> NOTIFY=NEVER"],
        FROM_ME + b"\r\nhi",
    )
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, 1e10)
    assert queued is not None and queued.dsn.notify(DAVE).events == {NEVER}
    assert not queued.dsn.notify(DAVE).wants(FAILURE)


# SMTPUTF8


UTF8_LOCAL = "jörg"
UTF8_TO_ME = f"RCPT TO:<{UTF8_LOCAL}@{domain_for(NODE)}>"


@pytest.mark.parametrize(
    ("mail", "rcpt", "reply"),
    [
        (f"MAIL FROM:<{BOB}>", UTF8_TO_ME, b"553 5.6.7"),  # RFC 6531 section 3.7.4.1
        (f"MAIL FROM:<{BOB}> SMTPUTF8", UTF8_TO_ME, b"550 5.1.1 No such user"),  # user names are ASCII
        (f"MAIL FROM:<{BOB}> smtputf8", f"RCPT TO:<{ME}>", b"250 2.1.5"),
        (f"MAIL FROM:<{BOB}> SMTPUTF8", f"RCPT TO:<ü@{domain_for(PEER)}>", b"550 5.7.1 Relaying denied"),
        (f"MAIL FROM:<{BOB}> SMTPUTF8", f"RCPT TO:<{ME}ü>", b"553 5.1.3"),  # mesh domains are ASCII
    ],
)
def test_utf8_recipients_on_the_mesh(mail: str, rcpt: str, reply: bytes) -> None:
    session = _mesh(Node())
    assert session.say(mail.encode()).startswith(b"250 2.1.0")
    assert session.say(rcpt.encode()).startswith(reply)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (f"MAIL FROM:<ünïcode@{domain_for(PEER)}>", b"553 5.6.7"),
        (f"MAIL FROM:<ünïcode@{domain_for(PEER)}> SMTPUTF8", b"250 2.1.0"),
        (f"MAIL FROM:<ünïcode@{domain_for(NODE)}> SMTPUTF8", b"550 5.7.1"),  # not the sending node
        (f"MAIL FROM:<\x85x@{domain_for(PEER)}> SMTPUTF8", b"501 5.1.7 Bad character"),  # a C1 control
        (f"MAIL FROM:<a\x7f@{domain_for(PEER)}> SMTPUTF8", b"501 5.1.7 Bad character"),
    ],
)
def test_utf8_reverse_paths_on_the_mesh(line: str, reply: bytes) -> None:
    assert _mesh(Node()).say(line.encode()).startswith(reply)


def test_invalid_utf8_in_a_path_is_a_syntax_error() -> None:
    session = _mesh(Node())
    assert session.say(b"MAIL FROM:<\xff\xfe@x> SMTPUTF8").startswith(b"501 5.1.7 Address is not valid UTF-8")
    assert session.say(f"MAIL FROM:<{BOB}> SMTPUTF8".encode()).startswith(b"250")
    assert session.say(b"RCPT TO:<\xc3@x>").startswith(b"501 5.1.3 Address is not valid UTF-8")


def test_smtputf8_belongs_to_its_transaction() -> None:
    session = _mesh(Node())
    assert session.say(f"MAIL FROM:<{BOB}> SMTPUTF8".encode()).startswith(b"250")
    assert session.say(b"RSET").startswith(b"250")
    assert session.say(f"MAIL FROM:<{BOB}>".encode()).startswith(b"250")
    assert session.say(UTF8_TO_ME.encode()).startswith(b"553 5.6.7")


def test_submission_utf8_recipient_elsewhere_is_queued_and_utf8_sender_refused() -> None:
    node = Node()
    session = node.submit()
    assert session.say(f"MAIL FROM:<jörg@{domain_for(NODE)}> SMTPUTF8".encode()).startswith(b"553 5.7.1")
    other = f"jörg@{domain_for(PEER)}"
    reply = _send(session, f"MAIL FROM:<{ME}> SMTPUTF8", [f"RCPT TO:<{other}>"], FROM_ME + b"\r\nhi")
    assert reply.startswith(b"250 2.0.0")
    queued = queue.next_due(PEER.compressed, 1e10)
    assert queued is not None and [r for _, r in queued.recipients] == [other]


def test_utf8_headers_and_body_are_stored_byte_for_byte() -> None:
    node = Node()
    content = (
        FROM_BOB + "Subject: Grüße aus Zürich ✉\r\nTo: Jörg <alice@x>\r\n\r\nÄrger? Nein: 日本語 ✓".encode()
    )
    reply = _send(_mesh(node), f"MAIL FROM:<{BOB}> SMTPUTF8 BODY=8BITMIME", [f"RCPT TO:<{ME}>"], content)
    assert reply.startswith(b"250 2.0.0")
    [stored] = _stored()
    assert stored.endswith(content + b"\r\n")


def test_pipelined_smtputf8_transaction() -> None:
    """RCPT is judged by the MAIL sent before it in the same packet (RFC 2920)."""
    session = _mesh(Node())
    mail = f"MAIL FROM:<ünïcode@{domain_for(PEER)}> SMTPUTF8 RET=HDRS\r\n".encode()
    rcpts = f"{UTF8_TO_ME} NOTIFY=NEVER\r\nRCPT TO:<{ME}> NOTIFY=SUCCESS\r\nDATA\r\n".encode()
    replies = session.send(mail + rcpts).splitlines()
    assert [line[:9] for line in replies] == [b"250 2.1.0", b"550 5.1.1", b"250 2.1.5", b"354 Conti"]


@pytest.mark.parametrize(("param", "protocol"), [("", b"with ESMTP;"), (" SMTPUTF8", b"with UTF8SMTP;")])
def test_mesh_trace_names_smtputf8(param: str, protocol: bytes) -> None:
    node = Node()
    reply = _send(_mesh(node), f"MAIL FROM:<{BOB}>{param}", [f"RCPT TO:<{ME}>"], FROM_BOB + b"\r\nhi")
    assert reply.startswith(b"250 2.0.0")
    [stored] = _stored()
    assert protocol in stored.split(FROM_BOB)[0]  # RFC 6531 section 3.7.3


@pytest.mark.parametrize(("param", "protocol"), [("", b"with ESMTPA;"), (" SMTPUTF8", b"with UTF8SMTPA;")])
def test_submission_trace_names_smtputf8(param: str, protocol: bytes) -> None:
    node = Node()
    reply = _send(node.submit(), f"MAIL FROM:<{ME}>{param}", [f"RCPT TO:<{CAROL}>"], FROM_ME + b"\r\nhi")
    assert reply.startswith(b"250 2.0.0")
    [stored] = _stored()
    assert protocol in stored.split(FROM_ME)[0]
