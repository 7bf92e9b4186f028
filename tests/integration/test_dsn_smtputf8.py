"""DSN requests (RFC 3461) and SMTPUTF8 (RFC 6531/6532) end to end on two real nodes (yggdrasil 0.5.12).

Node A has alice, node B has bob. alice submits on A with smtplib, giving the DSN parameters per
recipient; the notifications are read from alice's INBOX on A over IMAP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from . import harness
from .messages import (
    bodies_matching,
    check_delivered,
    fetch_body,
    make_message,
    wait_for_body,
    wait_for_message,
)

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-3"}
TIMEOUT = 60.0
#: A line of the body only a whole returned message (RET=FULL) contains.
BODY_MARK = "body-only marker: 7f3c"


class Mesh(harness.Pair):
    """Nodes A and B with their users' addresses."""

    @property
    def alice(self) -> str:
        return self.address("alice")

    @property
    def bob(self) -> str:
        return self.address("bob")


@pytest.fixture(scope="module")
def mesh(product: None, module_lab: harness.Lab) -> Mesh:
    return Mesh.start(module_lab, {"alice": PASSWORDS["alice"]}, {"bob": PASSWORDS["bob"]})


def _submit(
    mesh: Mesh, mail_options: Sequence[str], recipients: dict[str, Sequence[str]], subject: str, body: str
) -> tuple[bytes, str]:
    """alice submits one message on A; ``recipients`` maps each to its RCPT TO parameters."""
    message, mid = make_message(mesh.alice, list(recipients), subject, body)
    with mesh.a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
        code, reply = smtp.mail(mesh.alice, ["BODY=8BITMIME", *mail_options])
        assert code == 250, reply
        for recipient, options in recipients.items():
            code, reply = smtp.rcpt(recipient, list(options))
            assert code == 250, (recipient, reply)
        code, reply = smtp.data(message)
        assert code == 250, reply
    return message, mid


def _report_about(mid: str, action: str) -> Callable[[bytes], bool]:
    marker = f"Action: {action}\r\n".encode()
    return lambda body: b"multipart/report" in body and marker in body and mid.encode() in body


def _wait_report(mesh: Mesh, mid: str, action: str) -> bytes:
    with mesh.a.bridge.imap(("alice", PASSWORDS["alice"])) as imap:
        _, report = wait_for_body(imap, _report_about(mid, action), what=f"{action} report on {mid}")
    return report


def _reports(mesh: Mesh, mid: str) -> list[bytes]:
    with mesh.a.bridge.imap(("alice", PASSWORDS["alice"])) as imap:
        return [
            body
            for _, body in bodies_matching(imap, lambda b: b"multipart/report" in b and mid.encode() in b)
        ]


def test_both_ports_advertise_dsn_and_smtputf8(mesh: Mesh) -> None:
    with mesh.a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
        assert smtp.has_extn("dsn") and smtp.has_extn("smtputf8")
        # and nothing else: after AUTH, unadvertised MAIL and RCPT parameters get 555 5.5.4
        assert smtp.mail(mesh.alice, ["XVERP"]) == (555, b"5.5.4 Parameter XVERP is not supported here")
        assert smtp.mail(mesh.alice)[0] == 250
        assert smtp.rcpt(mesh.bob, ["X-FOO=1"]) == (555, b"5.5.4 Parameter X-FOO is not supported here")
        smtp.rset()
    with harness.smtp_client(mesh.a.ns, mesh.b.address.compressed, harness.MESH_PORT) as smtp:
        assert smtp.has_extn("dsn") and smtp.has_extn("smtputf8")


def test_notify_success_gets_a_delivered_report_with_envid_and_orcpt(mesh: Mesh) -> None:
    options = ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{mesh.bob}"]
    message, mid = _submit(mesh, ["RET=HDRS", "ENVID=alice+2Benv-1"], {mesh.bob: options}, "receipt", "hi\n")
    with mesh.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        check_delivered(
            fetch_body(imap, wait_for_message(imap, mid, timeout=TIMEOUT)),
            message,
            received=2,
            return_path=mesh.alice,
        )
    report = _wait_report(mesh, mid, "delivered")
    assert b"report-type=delivery-status" in report
    assert re.search(rb"^Status: 2\.0\.0\r$", report, re.MULTILINE), report
    assert b"Original-Envelope-Id: alice+env-1\r\n" in report
    recipient = f"Original-Recipient: rfc822; {mesh.bob}\r\nFinal-Recipient: rfc822; {mesh.bob}\r\n"
    assert recipient.encode() in report
    assert f"Reporting-MTA: dns; {mesh.b.bridge.domain}".encode() in report  # B wrote it at final delivery


def test_notify_never_to_an_unknown_user_produces_no_bounce(mesh: Mesh) -> None:
    never, told = mesh.b.bridge.address_of("nobody"), mesh.b.bridge.address_of("nobody-else")
    run = mesh.a.bridge.current()
    _, quiet = _submit(mesh, [], {never: ["NOTIFY=NEVER"]}, "never tell me", "x\n")
    run.wait_events("delivery.failed", TIMEOUT, where=lambda event: event.get("message_id") == quiet)
    # one message, two unknown users: the failure report names only the one whose sender asked
    _, mid = _submit(mesh, [], {never: ["NOTIFY=NEVER"], told: ["NOTIFY=FAILURE"]}, "tell me once", "x\n")
    report = _wait_report(mesh, mid, "failed")
    assert f"Final-Recipient: rfc822; {told}".encode() in report
    assert f"Final-Recipient: rfc822; {never}".encode() not in report
    # the first message failed before the second was even submitted, and nobody was told of it
    assert _reports(mesh, quiet) == []


@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
def test_ret_decides_what_a_failure_report_returns(mesh: Mesh, ret: str) -> None:
    nobody = mesh.b.bridge.address_of(f"nobody-{ret.lower()}")
    message, mid = _submit(mesh, [f"RET={ret}"], {nobody: []}, f"RET={ret}", f"{BODY_MARK}\n")
    report = _wait_report(mesh, mid, "failed")
    if ret == "FULL":
        assert b"Content-Type: message/rfc822\r\n" in report
        assert message in report
    else:
        assert b"Content-Type: text/rfc822-headers\r\n" in report
        assert f"Subject: RET={ret}".encode() in report and BODY_MARK.encode() not in report


def test_smtputf8_message_travels_byte_for_byte(mesh: Mesh) -> None:
    subject = "Grüße aus Zürich ✉ 日本語"
    body = "Ärger? Nein.\nΚαλημέρα κόσμε, 🦉\n"
    message, mid = make_message(mesh.alice, [mesh.bob], subject, body, extra_headers=[("Comments", "Jörg ✓")])
    with mesh.a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
        refused = smtp.sendmail(mesh.alice, [mesh.bob], message, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    with mesh.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        stored = fetch_body(imap, wait_for_message(imap, mid, timeout=TIMEOUT))
    trace = check_delivered(stored, message, received=2, return_path=mesh.alice)
    assert f"Subject: {subject}\r\n".encode() in stored
    assert b" with UTF8SMTPA;" in trace[-1]  # A's submission line (RFC 6531 section 3.7.3)
