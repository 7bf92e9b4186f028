"""The SMTP server protocol's rules and bounds, through StringTransport and task.Clock."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from smtpsession import BOB, LOOPBACK, ME, NODE, PEER, Node, Session, limits
from twisted.internet.defer import fail

from ygbridge.addressing import domain_for
from ygbridge.errors import LoginThrottled, SenderMismatch
from ygbridge.smtp import connection, protocol
from ygbridge.smtp.protocol import SMTPServer
from ygbridge.store.models import Message

MESH_FROM = f"MAIL FROM:<{BOB}>".encode()
TO_ME = f"RCPT TO:<{ME}>".encode()
#: The visible sender a mesh message needs (the sending node's own address).
FROM = f"From: {BOB}\r\n".encode()


def _stored() -> list[bytes]:
    """The stored messages, without the trace fields this node put on top of them."""
    bodies = [bytes(m.body) for m in Message.select().order_by(Message.id)]
    return [body[body.find(FROM) :] if FROM in body else body for body in bodies]


def _mesh(node: Node) -> Session:
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer")
    return session


def _deliver(session: Session, body: bytes, mail: bytes = MESH_FROM, rcpt: bytes = TO_ME) -> bytes:
    assert session.say(mail).startswith(b"250"), mail
    assert session.say(rcpt).startswith(b"250"), rcpt
    assert session.say(b"DATA").startswith(b"354")
    return session.send(body + b"\r\n.\r\n")


# Twisted's SMTP is not used (issue 11): the command layer is ygbridge's own


def test_the_server_builds_on_no_twisted_mail_class() -> None:
    assert not [
        c for c in SMTPServer.__mro__ if c.__module__.startswith(("twisted.mail", "twisted.protocols"))
    ]
    for module in ("commands", "framing", "mesh", "protocol", "server", "submission"):
        source = (Path(protocol.__file__).parent / f"{module}.py").read_text()
        assert "from twisted.mail" not in source and "from twisted.protocols" not in source, module


# Lines


def test_overlong_line_is_refused_and_skipped_to_its_end() -> None:
    node = Node()
    session = _mesh(node)
    reply = session.send(b"NOOP " + b"x" * 3000 + b"\r\nNOOP\r\n")
    assert reply == b"500 5.5.2 Line too long (limit 2048 octets)\r\n250 2.0.0 OK\r\n"
    assert not session.closed


def test_overlong_lines_close_the_connection_after_the_offence_limit() -> None:
    node = Node(limits(smtp_line_offences=3))
    session = _mesh(node)
    for _ in range(2):
        assert session.send(b"x" * 2100 + b"\r\n").startswith(b"500 5.5.2 ")
    assert (
        session.send(b"x" * 2100 + b"\r\n")
        == f"421 4.7.0 {node.mesh._hostname()} Too many overlong lines, closing connection\r\n".encode()
    )  # noqa: E501
    assert session.closed


def test_a_line_that_never_ends_is_not_buffered_and_closes_the_connection() -> None:
    node = Node()
    session = _mesh(node)
    replies = b""
    for _ in range(10):  # 10 MB without a line end, in 1 MB pieces
        replies += session.send(b"A" * 1_000_000)
        assert len(session.protocol._lines) < node.limits.smtp_line
    assert replies.startswith(b"500 5.5.2 ") and replies.endswith(
        b"Too many overlong lines, closing connection\r\n"
    )
    assert session.closed


def test_the_line_limit_holds_on_submission_after_auth() -> None:
    """Issue 7: a logged-in client is bounded as a stranger is, in and out of a transaction."""
    node = Node(limits(smtp_line_offences=3))
    session = node.submit()
    too_long = b"500 5.5.2 Line too long (limit 2048 octets)\r\n"
    assert session.send(b"NOOP " + b"x" * 3000 + b"\r\n") == too_long
    assert session.say(f"MAIL FROM:<{ME}>".encode()).startswith(b"250")
    assert session.send(b"RCPT TO:<" + b"b" * 2100) == too_long  # no line end yet
    assert session.send(b"b" * 100 + b">\r\nNOOP\r\n") == b"250 2.0.0 OK\r\n"  # skipped to its end
    assert not session.closed
    assert session.send(b"x" * 2049 + b"\r\n") == (
        f"421 4.7.0 {node.submission._hostname()} Too many overlong lines, closing connection\r\n".encode()
    )
    assert session.closed


def test_a_connection_that_will_not_go_is_cut_off() -> None:
    """Over TLS, a close waits for the client's close_notify: one that never sends it is aborted."""
    node = Node(limits(smtp_line_offences=1))
    session = _mesh(node)
    assert session.send(b"x" * 2100 + b"\r\n").startswith(b"421 4.7.0 ")
    assert session.closed and not session.transport.disconnected
    node.clock.advance(connection.CLOSE_TIMEOUT)
    assert session.transport.disconnected  # aborted


def test_bare_lf_ends_a_command_line() -> None:
    session = _mesh(Node())
    assert session.send(b"NOOP\nNOOP\r\n") == b"250 2.0.0 OK\r\n250 2.0.0 OK\r\n"


# Junk, idle and session time


def test_junk_commands_close_the_connection_past_the_limit() -> None:
    node = Node(limits(smtp_junk_commands=5))
    session = _mesh(node)
    assert session.send(b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nFROB\r\n").count(b"\r\n") == 5
    assert session.say(b"NOOP").startswith(b"421 4.7.0 ")
    assert session.closed


def test_an_accepted_message_resets_the_junk_count() -> None:
    node = Node(limits(smtp_junk_commands=3))
    session = _mesh(node)
    session.say(b"NOOP", b"NOOP")
    assert _deliver(session, FROM + b"Subject: 1\r\n\r\nx").startswith(b"250 2.0.0")
    assert session.say(b"RSET", b"NOOP", b"NOOP") == b"250 2.0.0 OK\r\n" * 3
    assert not session.closed


def test_idle_connections_are_closed() -> None:
    node = Node(limits(smtp_idle=60))
    session = _mesh(node)
    node.clock.advance(59)
    assert session.say(b"NOOP") == b"250 2.0.0 OK\r\n"
    node.clock.advance(59)
    assert not session.closed  # activity started the wait afresh
    node.clock.advance(1)
    assert session.read().startswith(b"421 4.4.2 ") and session.closed


def test_noop_cannot_extend_a_session_past_its_limit() -> None:
    node = Node(limits(smtp_idle=60, smtp_session=300))
    session = _mesh(node)
    for _ in range(5):
        node.clock.advance(50)
        assert session.say(b"NOOP") == b"250 2.0.0 OK\r\n"
    node.clock.advance(50)
    assert session.read().endswith(b"Session time limit reached, closing connection\r\n") and session.closed


def test_the_session_limit_waits_for_a_pending_reply() -> None:
    from test_smtp_pipelining import LaterDB

    db = LaterDB()
    node = Node(limits(smtp_session=300), db=db)
    session = _mesh(node)
    session.say(MESH_FROM)
    assert session.say(TO_ME) == b""  # the database has not answered yet
    node.clock.advance(300)
    assert not session.closed
    db.answer()
    assert session.read() == (
        b"250 2.1.5 Recipient OK\r\n421 4.4.2 "
        + node.mesh._hostname().encode()
        + b" Session time limit reached, closing connection\r\n"
    )


def test_pipelined_input_is_not_read_while_too_much_waits() -> None:
    from test_smtp_pipelining import LaterDB

    db = LaterDB()
    node = Node(limits(smtp_junk_commands=100_000), db=db)
    session = _mesh(node)
    session.say(MESH_FROM)
    session.send(TO_ME + b"\r\n" + b"NOOP\r\n" * 20_000)
    assert session.transport.producerState == "paused"
    db.answer()
    assert session.transport.producerState == "producing"
    assert session.read().count(b"250 2.0.0 OK\r\n") == 20_000


# Recipients and parameters


def test_recipients_past_the_limit_get_452() -> None:
    node = Node(limits(recipients=3))
    session = _mesh(node)
    session.say(MESH_FROM)
    assert [session.code(TO_ME) for _ in range(4)] == [250, 250, 250, 452]
    assert session.say(TO_ME).startswith(b"452 4.5.3 Too many recipients")
    assert session.say(b"DATA").startswith(b"354")
    assert session.send(FROM + b"Subject: x\r\n\r\nhi\r\n.\r\n").startswith(b"250 ")


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        (b" SIZE=100", b"250 2.1.0"),
        (b" SIZE=100 BODY=8BITMIME", b"250 2.1.0"),
        (b" body=7bit", b"250 2.1.0"),
        (b" SIZE=abc", b"501 5.5.4"),
        (b" SIZE=" + b"9" * 5000, b"500 5.5.2"),  # longer than a command line
        (b" SIZE=" + b"9" * 1000, b"501 5.5.4"),
        (b" SIZE=99999", b"552 5.3.4"),
        (b" SIZE", b"501 5.5.4"),
        (b" BODY=BINARYMIME", b"501 5.5.4"),
        (b" SMTPUTF8", b"250 2.1.0"),
        (b" NOTIFY=NEVER", b"555 5.5.4"),  # a RCPT parameter
        (b" AUTH=<>", b"555 5.5.4"),  # AUTH is not offered on the mesh
        (b" FOO=bar", b"555 5.5.4"),
        (b" SIZE=1 SIZE=2", b"501 5.5.4"),
        (b"SIZE=1", b"501 5.5.4"),
        (b" =x", b"501 5.5.4"),
    ],
)
def test_mail_parameters_are_parsed_strictly(params: bytes, reply: bytes) -> None:
    session = _mesh(Node())
    assert session.say(MESH_FROM + params).startswith(reply)


def test_unadvertised_rcpt_parameters_get_555() -> None:
    session = _mesh(Node())
    session.say(MESH_FROM)
    assert session.say(TO_ME + b" XYZ=1").startswith(b"555 5.5.4 Parameter XYZ")
    assert session.say(TO_ME + b" SIZE=1").startswith(b"555 5.5.4 Parameter SIZE")


def test_submission_accepts_the_auth_parameter_it_offers() -> None:
    session = Node().submit()
    assert session.say(f"MAIL FROM:<{ME}> AUTH=<> BODY=8BITMIME".encode()).startswith(b"250 2.1.0")


def test_unadvertised_parameters_get_555_on_submission_too() -> None:
    """After AUTH, as on the mesh: extensions this port does not offer (VERP, MT-PRIORITY, BY,
    REQUIRETLS, RRVS) and parameters of the other command get 555, and the session goes on."""
    node = Node()
    session = node.submit()
    for param in (
        "XVERP",
        "FOO=bar",
        "MT-PRIORITY=3",
        "BY=120;R",
        "REQUIRETLS",
        "NOTIFY=NEVER",
        "ORCPT=rfc822;x@y",
    ):
        key = param.partition("=")[0].encode()
        reply = session.say(f"MAIL FROM:<{ME}> BODY=8BITMIME {param}".encode())
        assert reply == b"555 5.5.4 Parameter %b is not supported here\r\n" % key, param
    assert session.say(f"MAIL FROM:<{ME}> BODY=8BITMIME".encode()).startswith(b"250 2.1.0")
    carol = f"carol@{domain_for(NODE)}"
    for param in (
        "XYZ=1",
        "SIZE=1",
        "RET=FULL",
        "ENVID=e1",
        "SMTPUTF8",
        "AUTH=<>",
        "RRVS=2030-01-01T00:00:00Z",
    ):
        key = param.partition("=")[0].encode()
        reply = session.say(f"RCPT TO:<{carol}> {param}".encode())
        assert reply == b"555 5.5.4 Parameter %b is not supported here\r\n" % key, param
    assert session.say(f"RCPT TO:<{carol}>".encode()).startswith(b"250 2.1.5")
    assert session.say(b"DATA").startswith(b"354")
    body = f"From: {ME}\r\nSubject: after the refusals\r\n\r\nhi\r\n".encode()
    assert session.send(body + b".\r\n").startswith(b"250 2.0.0")
    [stored] = [bytes(m.body) for m in Message.select()]
    assert stored.endswith(body)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:<a b@c>", b"501"),
        (b"MAIL FROM:<x@y", b"501 5.5.4"),
        (b"MAIL TO:<x@y>", b"501 5.5.4"),
        ("MAIL FROM:<ü@x>".encode(), b"553 5.6.7"),
        (b"MAIL FROM:<" + b"a" * 300 + b">", b"501 5.1.7"),
        (b"MAIL FROM:<>x", b"501 5.5.4"),
    ],
)
def test_bad_paths(line: bytes, reply: bytes) -> None:
    assert _mesh(Node()).say(line).startswith(reply)


def test_command_order() -> None:
    session = _mesh(Node())
    assert session.say(TO_ME).startswith(b"503 5.5.1")
    assert session.say(b"DATA").startswith(b"503 5.5.1")
    session.say(MESH_FROM)
    assert session.say(MESH_FROM).startswith(b"503 5.5.1")
    assert session.say(f"RCPT TO:<nobody@{ipaddress.IPv6Address(NODE)}>".encode())[:1] == b"5"
    assert session.say(b"DATA").startswith(b"554 5.5.1 No valid recipients")
    assert session.say(b"STARTTLS").startswith(b"502 5.5.1")
    assert session.say(b"AUTH PLAIN AGFsaWNlAHB3").startswith(b"502 5.5.1")
    assert session.say(b"QUIT") == b"221 2.0.0 See you later\r\n" and session.closed


# DATA


WIRE = FROM + b"Subject: s\r\n\r\n..one\r\n.two\r\n...\r\nlast"


def test_data_split_anywhere_is_decoded_exactly() -> None:
    for size in (1, 2, 3, 5, 7):
        node = Node()
        session = _mesh(node)
        session.say(MESH_FROM, TO_ME, b"DATA")
        wire = WIRE + b"\r\n.\r\nNOOP\r\n"
        replies = b"".join(session.send(wire[i : i + size]) for i in range(0, len(wire), size))
        assert replies == b"250 2.0.0 Message accepted\r\n250 2.0.0 OK\r\n"
        assert _stored() == [FROM + b"Subject: s\r\n\r\n.one\r\ntwo\r\n..\r\nlast\r\n"]


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r\r\n"])
def test_only_crlf_dot_crlf_ends_data(fake_end: bytes) -> None:
    """SMTP smuggling: a second message hidden behind a bare LF or CR end stays part of the first."""
    node = Node()
    session = _mesh(node)
    smuggled = f"MAIL FROM:<{BOB}>\r\nRCPT TO:<{ME}>\r\nDATA\r\nSubject: smuggled\r\n".encode()
    body = FROM + b"Subject: real\r\n\r\nhi" + fake_end + smuggled
    assert _deliver(session, body) == b"250 2.0.0 Message accepted\r\n"
    assert _stored() == [(body + b"\r\n").replace(b"\r\n.", b"\r\n")]  # a leading dot is unstuffed


def test_an_empty_message() -> None:
    node = Node()
    assert _deliver(_mesh(node), b"") == b"550 5.7.1 the message has no From: field\r\n"
    assert _deliver(_mesh(node), FROM[:-2])[:3] == b"250"
    assert _stored() == [FROM]


def test_data_past_the_size_limit_is_dropped_as_it_arrives() -> None:
    node = Node(max_size=1000)
    session = _mesh(node)
    session.say(MESH_FROM, TO_ME, b"DATA")
    for _ in range(100):
        assert session.send(b"x" * 998 + b"\r\n") == b""
    assert session.send(b".\r\n").startswith(b"552 5.3.4 ")
    assert session.say(b"NOOP") == b"250 2.0.0 OK\r\n" and _stored() == []


# AUTH


def _submission(node: Node, peer: ipaddress.IPv6Address = LOOPBACK) -> Session:
    session = node.connect(node.submission, peer)
    session.say(b"EHLO client")
    return session


def test_auth_login_prompts_have_no_nul_byte() -> None:
    session = _submission(Node())
    assert session.say(b"AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
    assert session.say(b"YWxpY2U=") == b"334 UGFzc3dvcmQ6\r\n"
    assert session.say(b"cHc=") == b"235 2.7.0 Authentication successful\r\n"


def test_auth_login_with_initial_response_and_plain_without() -> None:
    node = Node()
    session = _submission(node)
    assert session.say(b"AUTH LOGIN YWxpY2U=") == b"334 UGFzc3dvcmQ6\r\n"
    assert session.say(b"d3Jvbmc=") == b""  # the login gate answers a failure after a delay
    node.clock.advance(10)
    assert session.read().startswith(b"535 5.7.8 ")
    assert session.say(b"AUTH PLAIN") == b"334 \r\n"
    assert session.say(b"AGFsaWNlAHB3").startswith(b"235 2.7.0 ")


@pytest.mark.parametrize(
    ("lines", "reply"),
    [
        ((b"AUTH LOGIN", b"*"), b"501 5.7.0 Authentication cancelled"),
        ((b"AUTH PLAIN", b"*"), b"501 5.7.0 Authentication cancelled"),
        ((b"AUTH PLAIN !!!!",), b"501 5.5.2 "),
        ((b"AUTH PLAIN AGFsaWNl",), b"501 5.5.2 "),  # no password part
        ((b"AUTH PLAIN Ym9iAGFsaWNlAHB3",), b"535 5.7.8 "),  # authzid bob for alice
        ((b"AUTH CRAM-MD5",), b"504 5.5.4 "),
    ],
)
def test_auth_refusals(lines: tuple[bytes, ...], reply: bytes) -> None:
    session = _submission(Node())
    assert session.say(*lines).splitlines()[-1].startswith(reply)
    assert session.say(f"MAIL FROM:<{ME}>".encode()).startswith(b"530 5.7.0")


def test_throttled_logins_get_454() -> None:
    node = Node()
    node.logins.login = lambda *args: fail(LoginThrottled("too many"))  # type: ignore[method-assign]
    session = _submission(node)
    assert session.say(b"AUTH PLAIN AGFsaWNlAHB3").startswith(b"454 4.7.0 ")


def test_the_login_gate_learns_the_source_address() -> None:
    node = Node()
    seen = []
    real = node.logins.login

    def login(portal: object, source: str, credentials: object, interface: object) -> object:
        seen.append((source, credentials.username))  # type: ignore[attr-defined]
        return real(portal, source, credentials, interface)  # type: ignore[arg-type]

    node.logins.login = login  # type: ignore[method-assign]
    _submission(node).say(b"AUTH PLAIN AGFsaWNlAHB3")
    assert seen == [("::1", b"alice")]


# Quotas, the disk floor, the visible sender


def test_mesh_messages_per_hour() -> None:
    node = Node(limits(mesh_messages_per_hour=2))
    session = _mesh(node)
    for n in range(2):
        assert _deliver(session, FROM + f"Subject: {n}\r\n\r\nx".encode()).startswith(b"250")
    reply = session.say(MESH_FROM)
    assert reply.startswith(b"452 4.7.0 ") and b"mesh_messages_per_hour" in reply
    node.clock.advance(1800)  # half an hour gives back one message
    session = _mesh(node)
    assert _deliver(session, FROM + b"Subject: 3\r\n\r\nx").startswith(b"250")
    assert session.say(MESH_FROM).startswith(b"452 4.7.0 ")


def test_mesh_bytes_per_hour() -> None:
    node = Node(limits(mesh_bytes_per_hour=500))
    session = _mesh(node)
    assert session.say(MESH_FROM + b" SIZE=600").startswith(b"452 4.7.0 ")
    assert _deliver(session, FROM + b"Subject: 1\r\n\r\n" + b"x" * 300).startswith(b"250")
    reply = _deliver(session, FROM + b"Subject: 2\r\n\r\n" + b"x" * 300)
    assert reply.startswith(b"452 4.7.0 ") and b"mesh_bytes_per_hour" in reply
    assert len(_stored()) == 1


@pytest.mark.parametrize("port", ["mesh", "submission"])
def test_disk_floor_at_mail_and_before_commit(port: str) -> None:
    node = Node(limits(min_free_disk=10_000), free_disk=9_000)
    session = _mesh(node) if port == "mesh" else node.submit()
    mail, rcpt = (MESH_FROM, TO_ME) if port == "mesh" else (f"MAIL FROM:<{ME}>".encode(), TO_ME)
    visible = FROM if port == "mesh" else b""  # submission adds the user's own From:
    assert session.say(mail).startswith(b"452 4.3.1 Insufficient system storage")
    node.free_disk = 10_500
    assert _deliver(session, visible + b"Subject: big\r\n\r\n" + b"x" * 600, mail, rcpt).startswith(
        b"452 4.3.1 "
    )
    assert _deliver(session, visible + b"Subject: small\r\n\r\nx", mail, rcpt).startswith(b"250")


@pytest.mark.parametrize("port", ["mesh", "submission"])
def test_a_sender_mismatch_is_refused_with_550(port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node()

    async def refuse(*args: object, **kwargs: object) -> None:
        raise SenderMismatch("From: mallory@elsewhere is not an address of the sending node")

    monkeypatch.setattr(node.intake, "deliver_local", refuse)
    monkeypatch.setattr(node.intake, "accept", refuse)
    session = _mesh(node) if port == "mesh" else node.submit()
    mail = MESH_FROM if port == "mesh" else f"MAIL FROM:<{ME}>".encode()
    reply = _deliver(session, b"From: mallory@elsewhere\r\n\r\nx", mail)
    assert reply == b"550 5.7.1 From: mallory@elsewhere is not an address of the sending node\r\n"


def test_an_unexpected_error_is_a_temporary_local_error(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(node.intake, "deliver_local", broken)
    reply = _deliver(_mesh(node), b"Subject: x\r\n\r\nx")
    assert reply == b"451 4.3.0 Local error, try again later\r\n"


def test_a_spool_that_fails_refuses_the_message_with_452(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(max_size=10 * 1024 * 1024)
    session = _mesh(node)
    session.say(MESH_FROM, TO_ME, b"DATA")

    def full(batch: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(session.protocol._transaction._spool, "_write_file", full)
    body = b"Subject: x\r\n\r\n" + b"spilled past the spool's memory\r\n" * 40_000
    assert session.send(body + b".\r\n").startswith(b"452 4.3.1 Insufficient system storage")
    assert session.say(b"NOOP") == b"250 2.0.0 OK\r\n" and _stored() == []


# BDAT (RFC 3030)


def test_bdat_chunks_carry_the_message_as_is() -> None:
    node = Node()
    session = _mesh(node)
    session.say(MESH_FROM, TO_ME)
    first, last = FROM + b"Subject: chunked\r\n\r\n.dot stays\r\n", b"\r\n.\r\nend\r\n"
    replies = session.send(b"BDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n" % (len(first), first, len(last), last))
    assert replies == b"250 2.0.0 %d octets received\r\n250 2.0.0 Message accepted\r\n250 2.0.0 OK\r\n" % len(
        first
    )
    assert _stored() == [first + last]


def test_bdat_octets_are_read_even_when_refused() -> None:
    session = _mesh(Node())
    assert session.send(b"BDAT 10\r\nNOOP\r\nRSETNOOP\r\n").startswith(b"503 5.5.1 MAIL FROM first\r\n250")
    session.say(MESH_FROM)
    assert session.send(b"BDAT 4 LAST\r\nQUIT").startswith(b"554 5.5.1 ")
    assert session.say(b"BDAT x").startswith(b"501 5.5.4 ")


#: A recipient of this node without an account.
TO_NOBODY = f"RCPT TO:<nobody@{domain_for(NODE)}>".encode()


def _pipelined(*lines: bytes, body: bytes) -> bytes:
    """Command lines, ``BDAT <size> LAST`` and ``body`` as one write (RFC 3030 section 4.2)."""
    return b"".join(line + b"\r\n" for line in lines) + b"BDAT %d LAST\r\n" % len(body) + body


def test_a_pipelined_bdat_is_answered_for_the_recipients_accepted() -> None:
    session = _mesh(Node())
    body = FROM + b"Subject: pipelined\r\n\r\nRSET\r\n"
    replies = session.send(_pipelined(MESH_FROM, TO_NOBODY, TO_ME, body=body) + b"NOOP\r\n")
    assert replies.splitlines() == [
        b"250 2.1.0 Sender OK",
        b"550 5.1.1 No such user here: nobody@" + domain_for(NODE).encode(),
        b"250 2.1.5 Recipient OK",
        b"250 2.0.0 Message accepted",
        b"250 2.0.0 OK",
    ]
    assert _stored() == [body]


def test_a_pipelined_bdat_without_an_accepted_recipient_is_read_and_refused() -> None:
    """RFC 3030 section 2: the chunk's octets are consumed before the refusal, never taken as
    commands; the transaction is refused as a whole (554, or 503 without a sender)."""
    session = _mesh(Node())
    body = FROM + b"\r\nQUIT\r\n"
    replies = session.send(_pipelined(MESH_FROM, TO_NOBODY, body=body) + b"NOOP\r\n")
    assert replies.splitlines()[2:] == [
        b"554 5.5.1 No valid recipients",
        b"250 2.0.0 OK",
    ]
    forged = f"MAIL FROM:<{ME}>".encode()  # not of the connecting node
    replies = session.send(b"RSET\r\n" + _pipelined(forged, TO_ME, body=body) + b"NOOP\r\n")
    assert [line[:9] for line in replies.splitlines()] == [
        b"250 2.0.0",
        b"550 5.7.1",
        b"503 5.5.1",
        b"503 5.5.1",
        b"250 2.0.0",
    ]
    assert not session.closed and _stored() == []
    assert session.send(_pipelined(MESH_FROM, TO_ME, body=body)).endswith(b"250 2.0.0 Message accepted\r\n")
    assert _stored() == [body]


def test_bdat_past_the_size_limit_and_data_after_bdat() -> None:
    node = Node(max_size=1000)
    session = _mesh(node)
    session.say(MESH_FROM, TO_ME)
    assert session.send(b"BDAT 600\r\n" + b"x" * 600).startswith(b"250 ")
    assert session.say(b"DATA").startswith(b"503 5.5.1 DATA cannot follow BDAT")
    assert session.send(b"BDAT 600 LAST\r\n" + b"x" * 600).startswith(b"552 5.3.4 ")
    assert session.send(b"BDAT 0 LAST\r\n").startswith(b"503 5.5.1 ")  # that transaction is over
    assert _stored() == []
