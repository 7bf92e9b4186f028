"""RFC 3464 delivery status notifications (multipart/report): mail that could not be delivered,
is delayed, or (when the sender asked, RFC 3461 NOTIFY=SUCCESS) was delivered.

A report about internationalised mail (a recipient address, or a header field of the original, in
UTF-8) takes RFC 6533's types, as Postfix does: ``message/global-delivery-status`` with the
``utf-8`` address type for such addresses, and the original as ``message/global`` (or its header
section as ``message/global-headers``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from ygbridge.message import header_block

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")
EXPIRED = "4.4.7"
FAILED, DELAYED, DELIVERED = "failed", "delayed", "delivered"
_WORDING = {
    DELIVERED: (
        "Successful Mail Delivery Report",
        "Your message was delivered to the mailbox of the following recipient(s), as you asked:",
    ),
    FAILED: (
        "Undelivered Mail Returned to Sender",
        "Your message could not be delivered to the following recipient(s):",
    ),
    DELAYED: (
        "Delayed Mail (still being retried)",
        "Your message has not been delivered yet to the following recipient(s); "
        "delivery is still being tried, you do not need to send it again:",
    ),
}


@dataclass(frozen=True)
class RecipientFailure:
    """Why one recipient did not get the message."""

    recipient: str
    status: str  # RFC 3463 code, e.g. 5.1.1
    diagnostic: str  # the peer's reply or our own reason
    remote: str | None = None  # the destination node's domain
    orcpt: str | None = None  # the sender's ORCPT for this recipient (RFC 3461), e.g. "rfc822;bob@..."


def status_of(code: int, text: str) -> str:
    """The enhanced status code of an SMTP reply (from its text, else from its code)."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else f"{code // 100}.0.0"


def _date(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def report_id(
    domain: str, original_id: str | None, queue_id: int, recipients: list[str], action: str = FAILED
) -> str:
    """A Message-ID that is the same for the same report, so a retried report is stored once."""
    key = f"{action}|{original_id}|{queue_id}|{'|'.join(recipients)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"<dsn-{digest}@{domain}>"


def _address(address: str) -> str:
    """A recipient as a DSN address field: RFC 6533's ``utf-8`` type when it is not ASCII."""
    return f"{'rfc822' if address.isascii() else 'utf-8'}; {address}"


def failure_report(
    *,
    domain: str,
    sender: str,
    original: bytes,
    failures: list[RecipientFailure],
    arrival: float,
    now: float,
    message_id: str,
    action: str = FAILED,
    envid: str | None = None,
    full: bool = False,
) -> bytes:
    """A complete DSN message (CRLF lines) telling ``sender`` that ``failures`` were not delivered
    (``action`` failed), not yet (delayed), or were (delivered). ``envid`` is the sender's
    ENVID; ``full`` (RET=FULL) returns the whole original, else its header section only."""
    subject, intro = _WORDING[action]
    returned = original if full else header_block(original) + b"\r\n\r\n"
    if full and not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    utf8 = not header_block(original).isascii() or not all(
        f.recipient.isascii() and (f.orcpt or "").isascii() for f in failures
    )
    boundary = f"=_ygbridge_{message_id.strip('<>').split('@')[0]}"
    listing = "\r\n".join(f"  {f.recipient}: {f.diagnostic}" for f in failures)
    human = f"This is the mail system at {domain}.\r\n\r\n{intro}\r\n\r\n{listing}\r\n"
    per_recipient = "\r\n".join(
        "{orcpt}Final-Recipient: {r}\r\nAction: {action}\r\nStatus: {s}\r\n{remote}"
        "Diagnostic-Code: smtp; {d}\r\nLast-Attempt-Date: {date}\r\n".format(
            orcpt=f"Original-Recipient: {f.orcpt.replace(';', '; ', 1)}\r\n" if f.orcpt else "",
            r=_address(f.recipient),
            action=action,
            s=f.status,
            remote=f"Remote-MTA: dns; {f.remote}\r\n" if f.remote else "",
            d=" ".join(f.diagnostic.split()),
            date=_date(now),
        )
        for f in failures
    )
    failed_recipients = (
        f"X-Failed-Recipients: {', '.join(f.recipient for f in failures)}\r\n" if action == FAILED else ""
    )
    envelope = f"Original-Envelope-Id: {envid}\r\n" if envid else ""
    head = (
        f"From: Mail Delivery System <postmaster@{domain}>\r\n"
        f"To: <{sender}>\r\n"
        f"{failed_recipients}"
        f"Subject: {subject}\r\n"
        f"Date: {_date(now)}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Description: Notification\r\n\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/{'global-' if utf8 else ''}delivery-status\r\n"
        "Content-Description: Delivery report\r\n\r\n"
        f"Reporting-MTA: dns; {domain}\r\n"
        f"{envelope}"
        f"Arrival-Date: {_date(arrival)}\r\n\r\n"
        f"{per_recipient}\r\n"
        f"--{boundary}\r\n"
    )
    if full:
        kind = "message/global" if utf8 else "message/rfc822"
        head += f"Content-Type: {kind}\r\nContent-Description: The message\r\n\r\n"
    else:
        kind = "message/global-headers" if utf8 else "text/rfc822-headers"
        head += f"Content-Type: {kind}\r\nContent-Description: Message headers\r\n\r\n"
    return head.encode("utf-8") + returned + f"--{boundary}--\r\n".encode("ascii")
