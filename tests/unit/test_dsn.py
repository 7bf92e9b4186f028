"""RFC 3464 reports, parsed back with the standard library as a mail client would."""

import email
import email.policy

from ygbridge.dsn import DELAYED, DELIVERED, FAILED, RecipientFailure, failure_report, report_id, status_of

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


def _human(report: bytes) -> str:
    """The text/plain part a mail client shows first."""
    message = email.message_from_bytes(report, policy=email.policy.default)
    part = next(iter(message.iter_parts()))
    assert part.get_content_type() == "text/plain"
    return part.get_content().replace("\r\n", "\n")


def _notice(failures: list[RecipientFailure], action: str = FAILED) -> str:
    return _human(
        failure_report(
            domain="x.meship",
            sender="a@x.meship",
            original=ORIGINAL,
            failures=failures,
            arrival=1_700_000_000,
            now=1_700_000_100,
            message_id=report_id("x.meship", "<orig@x>", 7, [f.recipient for f in failures], action),
            action=action,
        )
    )


def test_permanent_failure_is_explained() -> None:
    text = _notice([RecipientFailure("b@y.meship", "5.1.1", "550 5.1.1 No such user here: b@y.meship")])
    assert "{" not in text and "}" not in text
    assert text.startswith("This is the mail system at x.meship.\n\n")
    assert "Your message could not be delivered to the following recipient(s):" in text
    assert "  b@y.meship: 550 5.1.1 No such user here: b@y.meship" in text


def test_expired_message_is_explained() -> None:
    reason = "no delivery within 5 days: no route to node 203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47"
    text = _notice([RecipientFailure("b@y.meship", "4.4.7", reason)])
    assert "{" not in text
    assert "could not be delivered" in text
    assert f"  b@y.meship: {reason}" in text
    assert "Error" not in text  # no exception class names


def test_delay_warning_is_explained() -> None:
    text = _notice(
        [
            RecipientFailure("b@y.meship", "4.4.1", "peer down: no route"),
            RecipientFailure("c@y.meship", "4.4.1", "x"),
        ],
        DELAYED,
    )
    assert "{" not in text
    assert "has not been delivered yet" in text and "you do not need to send it again" in text
    assert "  b@y.meship: peer down: no route\n  c@y.meship: x\n" in text
    assert "could not be delivered" not in text


def test_delivered_notice_and_ret_full() -> None:
    delivered = failure_report(
        domain="x.meship",
        sender="a@x.meship",
        original=ORIGINAL,
        failures=[
            RecipientFailure("b@x.meship", "2.0.0", "250 2.0.0 delivered", "x.meship", "rfc822;B@x.meship")
        ],
        arrival=1_700_000_000,
        now=1_700_000_100,
        message_id="<d@x>",
        action=DELIVERED,
        envid="E-1",
    )
    text = _human(delivered)
    assert "Your message was delivered to the mailbox of the following recipient(s)" in text
    status = email.message_from_bytes(delivered, policy=email.policy.default).get_payload()[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "E-1"
    assert status[1]["Original-Recipient"] == "rfc822; B@x.meship" and status[1]["Action"] == "delivered"
    full = failure_report(
        domain="x.meship",
        sender="a@x.meship",
        original=ORIGINAL,
        failures=[RecipientFailure("b@y.meship", "5.1.1", "550 5.1.1 no")],
        arrival=1_700_000_000,
        now=1_700_000_100,
        message_id="<f@x>",
        full=True,
    )
    parts = list(email.message_from_bytes(full, policy=email.policy.default).iter_parts())
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"secret body" in full


def test_internationalised_mail_gets_rfc6533_types() -> None:
    """A UTF-8 recipient or header field: message/global-delivery-status with the utf-8 address
    type, and the original as message/global-headers (RET=HDRS) or message/global (RET=FULL)."""
    original = ORIGINAL.replace(b"Subject: Hi", "Subject: Grüße".encode())
    failures = [
        RecipientFailure("dörte@y.meship", "5.6.7", "553 5.6.7 non-ASCII addresses cannot be sent to it"),
        RecipientFailure("b@y.meship", "5.6.9", "550 5.6.9 non-ASCII header fields cannot be sent to it"),
    ]
    for full, returned in ((False, "message/global-headers"), (True, "message/global")):
        raw = failure_report(
            domain="x.meship",
            sender="a@x.meship",
            original=original,
            failures=failures,
            arrival=1_700_000_000,
            now=1_700_000_100,
            message_id=report_id("x.meship", "<orig@x>", 7, ["dörte@y.meship"]),
            full=full,
        )
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message.get_param("report-type") == "delivery-status"
        types = [part.get_content_type() for part in message.iter_parts()]
        assert types == ["text/plain", "message/global-delivery-status", returned]
        assert "Final-Recipient: utf-8; dörte@y.meship\r\n".encode() in raw
        assert b"Final-Recipient: rfc822; b@y.meship\r\n" in raw
        assert "Subject: Grüße".encode() in raw


def test_ascii_mail_keeps_the_rfc3464_types_even_with_an_8bit_body() -> None:
    original = ORIGINAL.replace(b"secret body", "geheimer Körper".encode())
    raw = failure_report(
        domain="x.meship",
        sender="a@x.meship",
        original=original,
        failures=[RecipientFailure("b@y.meship", "5.1.1", "550 5.1.1 No such user here")],
        arrival=1_700_000_000,
        now=1_700_000_100,
        message_id=report_id("x.meship", "<orig@x>", 7, ["b@y.meship"]),
        full=True,
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "message/rfc822"]
