"""Mail as the tests see it: build messages, submit them, find them over IMAP (polling or IDLE)."""

from __future__ import annotations

import email.utils
import imaplib
import re
import smtplib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .harness import HarnessError, wait_until


def make_message(
    sender: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    *,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> tuple[bytes, str]:
    """A CRLF-terminated RFC 5322 message (UTF-8 8bit body) and its Message-ID.

    It is already in the form smtplib puts on the wire, so what the server stores must be
    byte-identical to it.
    """
    message_id = email.utils.make_msgid(domain="ygbridge.test")
    headers = [
        ("From", sender),
        ("To", ", ".join(recipients)),
        ("Subject", subject),
        ("Date", email.utils.formatdate(localtime=False)),
        ("Message-ID", message_id),
        *extra_headers,
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    text = (
        "".join(f"{k}: {v}\r\n" for k, v in headers)
        + "\r\n"
        + body.replace("\r\n", "\n").replace("\n", "\r\n")
    )
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.encode("utf-8"), message_id


def send(smtp: smtplib.SMTP, sender: str, recipients: Sequence[str], message: bytes) -> None:
    """Submit; raise unless every recipient was accepted."""
    refused = smtp.sendmail(sender, list(recipients), message, mail_options=["BODY=8BITMIME"])
    if refused:
        raise AssertionError(f"recipients refused: {refused}")


_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def _check(result: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = result
    if status != "OK":
        raise HarnessError(f"IMAP {what} failed: {status} {data!r}")
    return data


def _fetch_items(data: list[Any]) -> list[tuple[bytes, bytes | None]]:
    """imaplib FETCH data as (response line, literal or None) pairs."""
    items: list[tuple[bytes, bytes | None]] = []
    for part in data:
        if isinstance(part, tuple):
            items.append((part[0], part[1]))
        elif isinstance(part, bytes) and part.strip() not in (b"", b")"):
            items.append((part, None))
    return items


def _fetch_all(imap: imaplib.IMAP4, mailbox: str, item: str) -> dict[int, bytes]:
    """UID -> the literal of ``item`` for every message in ``mailbox`` (re-SELECTs it)."""
    exists = int(_check(imap.select(mailbox), f"SELECT {mailbox}")[0] or 0)
    if exists == 0:
        return {}
    data = _check(imap.uid("FETCH", "1:*", f"(UID {item})"), f"UID FETCH 1:* {item}")
    found: dict[int, bytes] = {}
    for line, literal in _fetch_items(data):
        uid = _FETCH_UID.search(line)
        if uid is not None and literal is not None:
            found[int(uid.group(1))] = literal
    return found


def message_ids(imap: imaplib.IMAP4, mailbox: str = "INBOX") -> dict[int, str]:
    """UID -> Message-ID for every message in ``mailbox`` that has one (one FETCH of the headers)."""
    found: dict[int, str] = {}
    for uid, header in _fetch_all(imap, mailbox, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]").items():
        match = re.search(rb"^message-id:\s*(<[^>]*>)", header, re.IGNORECASE | re.MULTILINE)
        if match:
            found[uid] = match.group(1).decode("ascii", "replace")
    return found


def message_index(imap: imaplib.IMAP4, mailbox: str = "INBOX") -> dict[str, int]:
    """Message-ID -> UID for every message in ``mailbox``."""
    return {mid: uid for uid, mid in message_ids(imap, mailbox).items()}


def message_id_counts(imap: imaplib.IMAP4, mailbox: str = "INBOX") -> Counter[str]:
    """How many messages in ``mailbox`` carry each Message-ID (a duplicate counts twice)."""
    return Counter(message_ids(imap, mailbox).values())


def count_message(imap: imaplib.IMAP4, message_id: str, mailbox: str = "INBOX") -> int:
    """How many messages in ``mailbox`` have this Message-ID, by the server's SEARCH HEADER."""
    _check(imap.select(mailbox), f"SELECT {mailbox}")
    data = _check(imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"'), "UID SEARCH HEADER")
    return len(b" ".join(part for part in data if part).split())


def wait_for_message(
    imap: imaplib.IMAP4, message_id: str, *, mailbox: str = "INBOX", timeout: float = 60.0
) -> int:
    """Bounded polling until a message with ``message_id`` is in ``mailbox``; returns its UID."""
    return wait_until(
        lambda: message_index(imap, mailbox).get(message_id),
        timeout=timeout,
        interval=0.25,
        what=f"{message_id} in {mailbox}",
    )


def wait_for_body(
    imap: imaplib.IMAP4,
    predicate: Callable[[bytes], bool],
    *,
    what: str,
    mailbox: str = "INBOX",
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    """Bounded polling until some message's full text satisfies ``predicate``: (UID, text)."""

    def match() -> tuple[int, bytes] | None:
        return next(iter(bodies_matching(imap, predicate, mailbox)), None)

    return wait_until(match, timeout=timeout, interval=0.25, what=f"{what} in {mailbox}")


def bodies_matching(
    imap: imaplib.IMAP4, predicate: Callable[[bytes], bool], mailbox: str = "INBOX"
) -> list[tuple[int, bytes]]:
    """(UID, full text) of every message in ``mailbox`` whose text satisfies ``predicate``."""
    return [(uid, body) for uid, body in _fetch_all(imap, mailbox, "BODY.PEEK[]").items() if predicate(body)]


def fetch_body(imap: imaplib.IMAP4, uid: int) -> bytes:
    """The exact bytes of ``BODY[]`` of one message (mailbox must be selected)."""
    data = _check(imap.uid("FETCH", str(uid), "(BODY[])"), f"UID FETCH {uid} BODY[]")
    for line, literal in _fetch_items(data):
        if literal is not None and b"BODY[]" in line.upper():
            return literal
    raise HarnessError(f"no BODY[] in the FETCH response for UID {uid}: {data!r}")


#: What a submission client's trace must never show: its address or the name it gave in EHLO.
CLIENT_TRACES = (b"127.0.0.1", b"client.test", b"localhost")
_TRACE_FIELD = re.compile(rb"^(Return-Path|Received):", re.IGNORECASE)


def split_trace(stored: bytes) -> tuple[list[bytes], bytes]:
    """The trace fields on top of a stored message (each with its continuation lines) and the rest."""
    fields: list[bytes] = []
    rest = stored
    while _TRACE_FIELD.match(rest):
        end = rest.index(b"\r\n") + 2
        while rest[end : end + 1] in (b" ", b"\t"):
            end = rest.index(b"\r\n", end) + 2
        fields.append(rest[:end])
        rest = rest[end:]
    return fields, rest


def check_delivered(stored: bytes, original: bytes, *, received: int, return_path: str) -> list[bytes]:
    """Assert ``stored`` is ``original`` byte for byte under a ``Return-Path:`` and ``received``
    ``Received:`` lines that name no client; returns the trace fields."""
    trace, rest = split_trace(stored)
    assert rest == original, "the message was changed below its trace fields"
    names = [field.split(b":", 1)[0].lower() for field in trace]
    assert names == [b"return-path"] + [b"received"] * received, trace
    assert trace[0] == f"Return-Path: <{return_path}>\r\n".encode(), trace[0]
    for field in trace:
        assert not any(leak in field for leak in CLIENT_TRACES), field
    return trace


def fetch_flags(imap: imaplib.IMAP4, uid: int) -> set[str]:
    data = _check(imap.uid("FETCH", str(uid), "(FLAGS)"), f"UID FETCH {uid} FLAGS")
    for line, _ in _fetch_items(data):
        match = _FETCH_FLAGS.search(line)
        if match:
            return {f.decode() for f in match.group(1).split()}
    raise HarnessError(f"no FLAGS in the FETCH response for UID {uid}: {data!r}")


def idle_until(
    imap: imaplib.IMAP4,
    predicate: Callable[[bytes], bool],
    *,
    timeout: float,
    then: Callable[[], object] | None = None,
) -> list[bytes]:
    """IDLE: run ``then()`` once the server is idling, collect untagged lines until one satisfies
    ``predicate``, then DONE. Returns the untagged lines; HarnessError if ``timeout`` passes first.

    imaplib (Python < 3.14) has no IDLE, so this speaks the protocol on imaplib's socket.
    """
    tag = imap._new_tag()
    sock = imap.socket()
    previous = sock.gettimeout()
    deadline = time.monotonic() + timeout
    seen: list[bytes] = []

    def next_line() -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HarnessError(f"IDLE: nothing matched within {timeout:.0f}s; saw {seen!r}")
        sock.settimeout(left)
        try:
            line = imap.readline()
        except TimeoutError:
            raise HarnessError(f"IDLE: nothing matched within {timeout:.0f}s; saw {seen!r}") from None
        if not line:
            raise HarnessError(f"IDLE: the server closed the connection; saw {seen!r}")
        return line

    try:
        imap.send(tag + b" IDLE\r\n")
        while not (line := next_line()).startswith(b"+"):
            if line.startswith(tag):
                raise HarnessError(f"IDLE refused: {line!r}")
            seen.append(line)
        if then is not None:
            then()
        while not any(predicate(line) for line in seen):
            seen.append(next_line())
        imap.send(b"DONE\r\n")
        deadline = max(deadline, time.monotonic() + 10)
        while not (line := next_line()).startswith(tag):
            seen.append(line)
        if line.split()[1:2] != [b"OK"]:
            raise HarnessError(f"IDLE ended with {line!r}")
        return seen
    finally:
        sock.settimeout(previous)
