"""Property-based tests of the SMTP command and path parsers, the address parser, the visible-sender
checks and the protocol: no exception escapes, and every reply is a well-formed SMTP reply line
with an enhanced code. Quick by default; ``HYPOTHESIS_PROFILE=thorough`` runs 10,000 examples each."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from smtpsession import BOB, LOOPBACK, ME, NODE, PEER, Node

from ygbridge.addressing import MailAddress, domain_for, is_mesh_address, parse_domain
from ygbridge.errors import AddressError, SenderMismatch
from ygbridge.senders import check_node_sender, check_own_sender, visible_mailboxes
from ygbridge.smtp.commands import Refused, Reply, parse_command, parse_mail, parse_rcpt
from ygbridge.store.models import database

#: A reply line: code, separator, (where RFC 2034 wants one) an enhanced code of the same class.
LINE = re.compile(rb"([2-5][0-9][0-9])([ -])([\x20-\x7e]*)\r\n")
ENHANCED = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3}( |$)")

VERBS = [
    "EHLO",
    "HELO",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY",
    "HELP",
    "AUTH",
    "STARTTLS",
]
PARAMS = [
    "SIZE=10",
    "SIZE=x",
    "SIZE=" + "9" * 30,
    "BODY=8BITMIME",
    "BODY=7BIT",
    "BODY=x",
    "SMTPUTF8",
    "AUTH=<>",
]
PARAMS += ["NOTIFY=SUCCESS", "RET=HDRS", "=", "SIZE", "X-Y=z", "SIZE=1 SIZE=2"]
# RFC 3461 DSN and RFC 6531 SMTPUTF8, good and bad
PARAMS += ["NOTIFY=SUCCESS,FAILURE,DELAY", "NOTIFY=NEVER", "NOTIFY=NEVER,SUCCESS", "NOTIFY=x", "NOTIFY"]
PARAMS += ["RET=FULL", "RET=hdrs", "RET=x", "RET", "ENVID=a+2Bb", "ENVID=+ZZ", "ENVID=+0A", "ENVID"]
PARAMS += ["ENVID=" + "e" * 101, "ORCPT=rfc822;a+40b", "ORCPT=rfc822", "ORCPT=;x", "SMTPUTF8=yes"]
PARAMS += ["RET=FULL RET=HDRS", "NOTIFY=DELAY NOTIFY=FAILURE"]
UTF8_ME = f"jörg@{domain_for(NODE)}"
ADDRESSES = [ME, BOB, "", "postmaster", f"x@[IPv6:{PEER}]", "a@b", "@r,@s:a@b", "a\x00@b"]
ADDRESSES += [UTF8_ME, f"ǆ@{domain_for(PEER)}", "\x85@x", "a@ü"]


def _words(alphabet: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(alphabet), max_size=4).map(" ".join)


paths = st.builds(
    lambda keyword, spaces, address, brackets, params: (
        f"{keyword}:{spaces}{'<' if brackets else ''}{address}{'>' if brackets else ''} {params}"
    ),
    st.sampled_from(["FROM", "TO", "from", "To", "FRM"]),
    st.sampled_from(["", " ", "  "]),
    st.one_of(st.sampled_from(ADDRESSES), st.text(max_size=40)),
    st.booleans(),
    _words(PARAMS),
).map(lambda text: text.encode("utf-8", "surrogatepass"))

arguments = st.one_of(st.binary(max_size=300), paths)

lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    st.builds(lambda verb, arg: verb.encode() + b" " + arg, st.sampled_from(VERBS), arguments),
    st.sampled_from(
        [
            f"MAIL FROM:<{BOB}>".encode(),
            f"MAIL FROM:<{ME}> SIZE=10".encode(),
            f"RCPT TO:<{ME}>".encode(),
            f"MAIL FROM:<{BOB}> SMTPUTF8 RET=HDRS ENVID=x+2By".encode(),
            f"MAIL FROM:<{ME}> SMTPUTF8 BODY=8BITMIME".encode(),
            f"RCPT TO:<{ME}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{ME}".encode(),
            f"RCPT TO:<{UTF8_ME}> NOTIFY=NEVER".encode(),
            b"Subject: \xc3\xa4",
            b"DATA",
            b".",
            b"BDAT 5",
            b"BDAT 0 LAST",
            b"BDAT 12 LAST",
            b"AUTH PLAIN AGFsaWNlAHB3",
            b"AUTH LOGIN",
            b"YWxpY2U=",
            b"*",
            b"x" * 3000,
        ]
    ),
)


def _check_reply(reply: Reply) -> None:
    match = LINE.fullmatch(reply.encode())
    assert match is not None, reply
    enhanced = ENHANCED.match(match.group(3))
    assert enhanced is not None and enhanced.group(1) == match.group(1)[:1], reply


@given(st.binary(max_size=600))
def test_parse_command_never_fails(line: bytes) -> None:
    command = parse_command(line)
    assert command.verb == command.verb.upper() and command.verb.isascii()


@given(arguments, st.integers(min_value=0, max_value=10**12), st.booleans())
def test_parse_mail_raises_only_replies(arg: bytes, max_size: int, auth: bool) -> None:
    try:
        path, params = parse_mail(arg, max_size, auth)
    except Refused as refused:
        _check_reply(refused.reply)
    else:
        assert path.text.isascii() or params.smtputf8
        assert params.size is None or params.size <= max_size
        assert params.ret in (None, "FULL", "HDRS")
        assert params.envid is None or 0 < len(params.envid) <= 100


@given(arguments, st.booleans())
def test_parse_rcpt_raises_only_replies(arg: bytes, smtputf8: bool) -> None:
    try:
        path, notify = parse_rcpt(arg, smtputf8)
    except Refused as refused:
        _check_reply(refused.reply)
    else:
        assert path.text and len(path.text.encode()) <= 256
        assert path.text.isascii() or smtputf8
        assert "NEVER" not in notify.events or notify.events == {"NEVER"}
        assert notify.events <= {"SUCCESS", "FAILURE", "DELAY", "NEVER"}


@given(st.one_of(st.text(max_size=80), st.sampled_from(ADDRESSES).map(lambda a: f" <{a}> ")))
def test_mail_address_parse_raises_only_address_errors(text: str) -> None:
    try:
        address = MailAddress.parse(text)
    except AddressError:
        return
    assert is_mesh_address(address.node) and MailAddress.parse(address.literal).node == address.node


#: Pieces of From:/Sender: values: addresses of this node and others, display names that spell
#: addresses, groups, comments, encoded words, quoting and stray punctuation.
SENDER_PIECES = [ME, BOB, f"alice@[IPv6:{NODE}]", f"carol@[IPv6:{PEER}]", "Alice", '"Bob, Q"', f'"{BOB}"']
SENDER_PIECES += ["=?utf-8?q?=3Cbob=40x=3E?=", "(comment)", "<", ">", ",", ";", ":", "@", '"', "\\", "grp:"]
SENDER_PIECES += ["=?utf-8?b?w6k=?=", "é", "\t", " "]
sender_values = st.one_of(
    st.lists(st.sampled_from(SENDER_PIECES), max_size=6).map("".join).map(str.encode),
    st.binary(max_size=80),
)
sender_fields = st.lists(
    st.tuples(st.sampled_from([b"From", b"Sender", b"from", b"SENDER", b"Reply-To"]), sender_values),
    max_size=4,
)


@given(sender_fields, st.binary(max_size=40))
def test_visible_sender_checks_raise_only_sender_mismatch(
    fields: list[tuple[bytes, bytes]], body: bytes
) -> None:
    header = b"".join(
        name + b": " + value.replace(b"\r", b"").replace(b"\n", b" ") + b"\r\n" for name, value in fields
    )
    message = header + b"\r\n" + body
    own = MailAddress.parse(ME)
    for check in (lambda: check_node_sender(message, NODE), lambda: check_own_sender(message, own)):
        try:
            check()
        except SenderMismatch:
            continue
        # Accepted: a sender is shown, and every mailbox shown is on this node.
        shown = visible_mailboxes(message)
        assert shown
        for _title, mailbox in shown:
            assert parse_domain(mailbox.domain) == NODE


_nodes: list[Node] = []


def _node() -> Node:
    """One node for all examples (a new one when another test has replaced the database)."""
    if not _nodes or database.obj is not _nodes[0].database:
        _nodes[:] = [Node()]
    return _nodes[0]


@given(st.sampled_from(["mesh", "submission"]), st.lists(lines, max_size=12))
def test_every_reply_of_a_session_is_well_formed(port: str, sent: list[bytes]) -> None:
    node = _node()
    session = node.connect(node.mesh, PEER) if port == "mesh" else node.connect(node.submission, LOOPBACK)
    assert session.greeting.startswith(b"220 ") and session.greeting.endswith(b"\r\n")
    try:
        for line in sent:
            verb = parse_command(line).verb
            output = session.send(line + b"\r\n")
            replies = output.split(b"\r\n")
            assert replies.pop() == b"", output
            for text in replies:
                match = LINE.fullmatch(text + b"\r\n")
                assert match is not None, output
                code = match.group(1)
                if code in (b"334", b"354") or (code == b"250" and verb in ("EHLO", "HELO")):
                    continue  # RFC 2034: no enhanced code on these
                enhanced = ENHANCED.match(match.group(3))
                assert enhanced is not None and enhanced.group(1) == code[:1], output
            if session.closed:
                break
    finally:
        session.protocol.connectionLost(None)  # its timers leave the shared clock
