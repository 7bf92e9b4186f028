"""RFC 3464 reports, parsed back with the standard library as a mail client would."""

import email
import email.policy

from ygbridge.dsn import RecipientFailure, failure_report, report_id, status_of

ORIGINAL = b"From: a@x.meship\r\nTo: b@y.meship\r\nMessage-ID: <orig@x>\r\nSubject: Hi\r\n\r\nsecret body\r\n"


def _report() -> bytes:
    return failure_report(
        domain="x.meship",
        sender="a@x.meship",
        original=ORIGINAL,
        failures=[RecipientFailure("b@y.meship", "5.1.1", "550 5.1.1 No such user here", "y.meship")],
        arrival=1_700_000_000,
        now=1_700_000_100,
        message_id=report_id("x.meship", "<orig@x>", 7, ["b@y.meship"]),
    )


def test_report_structure_is_rfc3464() -> None:
    message = email.message_from_bytes(_report(), policy=email.policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["X-Failed-Recipients"] == "b@y.meship"
    assert message["Auto-Submitted"] == "auto-replied"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    status = parts[1].get_payload()
    per_message, per_recipient = status[0], status[1]
    assert per_message["Reporting-MTA"] == "dns; x.meship"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Final-Recipient"] == "rfc822; b@y.meship"
    assert "No such user" in per_recipient["Diagnostic-Code"]


def test_original_headers_but_not_the_body() -> None:
    raw = _report()
    assert b"Message-ID: <orig@x>\r\nSubject: Hi" in raw
    assert b"secret body" not in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_report_id_is_stable_per_failure() -> None:
    one = report_id("x.meship", "<orig@x>", 7, ["b@y.meship"])
    assert one == report_id("x.meship", "<orig@x>", 7, ["b@y.meship"])
    assert one != report_id("x.meship", "<orig@x>", 7, ["c@y.meship"])


def test_status_from_enhanced_code_or_reply_class() -> None:
    assert status_of(550, "5.1.1 No such user") == "5.1.1"
    assert status_of(554, "rejected") == "5.0.0"
