"""The visible-sender rule (From:, Sender:) on raw header bytes, and the trace lines."""

import email
import email.policy
import ipaddress

import pytest

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.errors import SenderMismatch
from ygbridge.senders import check_node_sender, check_own_sender
from ygbridge.trace import received_mesh, received_submission, return_path

A = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
B = ipaddress.IPv6Address("200:6fc8:9220:f400:5cc2:305a:4ac6:967e")
DA, DB = domain_for(A), domain_for(B)


def _message(from_: str, extra: str = "") -> bytes:
    return f"From: {from_}\r\n{extra}Subject: x\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    "from_",
    [
        f"carl@{DA}",
        f"Carl <carl@[IPv6:{A}]>",
        f"carl@{DA.upper()}",
        "carl@[IPv6:0203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47]",
        f"Carl\r\n <carl@{DA}>",  # folded
        f"=?utf-8?q?Gr=C3=BC=C3=9Fe?= <carl@{DA}>",  # encoded display name
        f'"Carl \\"C\\" (ops)" <carl@{DA}>',
        f"team: a@{DA}, b@{DA};",  # a group counts by its members
        f'"bob@example.com" <carl@{DA}>',  # not a mesh address: nobody on the mesh impersonated
        f"<@route.example:carl@{DA}>",  # obsolete route
    ],
)
def test_node_sender_in_the_sending_nodes_domain(from_: str) -> None:
    check_node_sender(_message(from_), A)


@pytest.mark.parametrize(
    ("from_", "extra", "why"),
    [
        (f"bob@{DB}", "", f"bob@{DB} is not in the sending node's domain {DA}"),
        (f"bob@[IPv6:{B}]", "", "is not in the sending node's domain"),
        ("bob@example.com", "", "is not in the sending node's domain"),
        (f"a@{DA}, b@{DB}", "", f"b@{DB}"),
        (f"carl@{DA}", f"Sender: s@{DB}\r\n", f"Sender: s@{DB}"),
        (f'"bob@{DB}" <carl@{DA}>', "", f"display name shows bob@{DB}"),
        (f"=?utf-8?q?bob=40{DB}?= <carl@{DA}>", "", f"display name shows bob@{DB}"),
        (f"=?utf-8?q?x_=3Cbob=40{DB}=3E?= <carl@{DA}>", "", "display name shows"),
        (f"bob@{DB} <carl@{DA}>", "", "cannot be read unambiguously"),  # clients differ on this
        ("undisclosed-recipients:;", "", "names no mailbox"),
        ("garbage", "", "cannot be read"),
        (f"grp:;carl@{DA}", "", "cannot be read"),  # the stdlib parser raised AttributeError here
        (f"carl@{DA}", f"From: x@{DA}\r\n", "2 From: fields"),
        (f"carl@{DA}", f"Sender: a@{DA}\r\nSender: b@{DA}\r\n", "2 Sender: fields"),
    ],
)
def test_node_sender_mismatch(from_: str, extra: str, why: str) -> None:
    with pytest.raises(SenderMismatch, match=why.replace("[", r"\[").replace(".", r"\.")):
        check_node_sender(_message(from_, extra), A)


def test_no_from_is_a_mismatch() -> None:
    with pytest.raises(SenderMismatch, match="no From: field"):
        check_node_sender(b"Subject: x\r\n\r\nFrom: carl@x\r\n", A)


def test_empty_group_with_a_sender_is_fine() -> None:
    check_node_sender(_message("undisclosed:;", f"Sender: carl@{DA}\r\n"), A)


def test_own_sender_either_form_and_nobody_else() -> None:
    own = MailAddress("alice", A)
    for ok in (f"Alice <alice@{DA}>", f"ALICE@[IPv6:{A}]"):
        check_own_sender(_message(ok), own)
    for bad in (f"bob@{DA}", f"alice@{DB}", f'"carol@{DA}" <alice@{DA}>'):
        with pytest.raises(SenderMismatch, match="is not your address|which is not your address"):
            check_own_sender(_message(bad), own)


def _fields(lines: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(lines + b"\r\n", policy=email.policy.default)  # type: ignore[return-value]


def test_received_lines_are_rfc5321_and_name_no_client() -> None:
    submitted = received_submission(MailAddress("alice", A), 1_700_000_000)
    assert submitted.endswith(b"\r\n") and b"\n\t" in submitted and b"\r\n\r\n" not in submitted
    value = " ".join(str(_fields(submitted)["Received"]).split())
    assert value == (
        f"from {DA} (authenticated user alice) by {DA} (ygbridge) with ESMTPA; "
        "Tue, 14 Nov 2023 22:13:20 +0000"
    )
    assert b"with ESMTPSA;" in received_submission(MailAddress("alice", A), 0, tls=True)
    assert b"with UTF8SMTPSA;" in received_submission(MailAddress("alice", A), 0, smtputf8=True, tls=True)
    mesh = " ".join(str(_fields(received_mesh(B, A, 1_700_000_000))["Received"]).split())
    assert mesh == f"from {DB} ([IPv6:{B}]) by {DA} (ygbridge) with ESMTP; Tue, 14 Nov 2023 22:13:20 +0000"
    assert all(len(line) <= 78 for line in (submitted + received_mesh(B, A, 0)).split(b"\r\n"))


def test_return_path() -> None:
    assert return_path(f"carl@{DA}") == f"Return-Path: <carl@{DA}>\r\n".encode()
    assert return_path("") == b"Return-Path: <>\r\n"
