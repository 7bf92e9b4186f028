"""SEARCH: every RFC 3501 key, answered by the store in SQL, through a StringTransport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ygbridge.store import messages
from ygbridge.testing.imap import Client, ImapLab, running_lab

lab = pytest.fixture(running_lab, name="lab")

FIRST = (
    b"From: Alice <alice@x.meship>\r\n"
    b"To: Bob <bob@y.meship>\r\n"
    b"Cc: carol@z.meship\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and Hello there\r\n"
    b"Date: Tue, 14 Nov 2023 23:30:00 -0500\r\n"
    b"\r\n"
    b"body one 100%\r\n"
)
SECOND = (
    b"From: Bob <bob@y.meship>\r\nSubject: other\r\nX-Chat: yes\r\nBcc: dave@w.meship\r\n\r\nsecond body\r\n"
)


@pytest.fixture
def client(lab: ImapLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """INBOX with UIDs 1 (FIRST, unseen) and 7 (SECOND: \\Seen $Chat), numbered 1 and 2."""
    lab.deliver(FIRST)
    for _ in range(5):  # UIDs 2 to 6 come and go, so UIDs and sequence numbers differ
        lab.deliver(flags=["\\Deleted"])
    lab.clock.advance(86400)
    lab.deliver(SECOND, flags=["\\Seen", "$Chat"])
    client = lab.client()
    client.select()
    assert client.send(b"e EXPUNGE\r\n").endswith(b"e OK EXPUNGE completed\r\n")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("SEARCH read messages instead of asking the database")

    monkeypatch.setattr(messages, "load_messages", no_loading)
    yield client


@pytest.mark.parametrize(
    ("command", "found"),
    [
        (b"SEARCH ALL", b"1 2"),
        (b"UID SEARCH ALL", b"1 7"),
        (b"SEARCH UNSEEN", b"1"),
        (b"UID SEARCH SEEN", b"7"),
        (b"SEARCH ANSWERED", b""),
        (b"SEARCH UNANSWERED UNDELETED UNDRAFT UNFLAGGED", b"1 2"),
        (b"SEARCH DELETED", b""),
        (b"SEARCH DRAFT", b""),
        (b"SEARCH FLAGGED", b""),
        (b"SEARCH KEYWORD $chat", b"2"),
        (b"SEARCH UNKEYWORD $Chat", b"1"),
        (b"SEARCH NEW", b""),
        (b"SEARCH RECENT", b""),
        (b"SEARCH OLD", b"1 2"),
        (b"SEARCH FROM bob", b"2"),
        (b"SEARCH FROM ALICE@X", b"1"),
        (b"SEARCH TO bob", b"1"),
        (b"SEARCH CC carol", b"1"),
        (b"SEARCH BCC dave", b"2"),
        (b'SEARCH SUBJECT "hello THERE"', b"1"),
        (b"SEARCH SUBJECT GR\xc3\x9cSSE", b"1"),
        (b"SEARCH CHARSET utf-8 SUBJECT {7+}\r\ngr\xc3\xbc\xc3\x9fe FROM {5+}\r\nalice", b"1"),
        (b"SEARCH HEADER X-Chat yes", b"2"),
        (b'SEARCH HEADER x-chat ""', b"2"),
        (b'SEARCH HEADER Message-ID ""', b""),
        (b"SEARCH BODY second", b"2"),
        (b"SEARCH BODY Bob", b""),
        (b"SEARCH BODY 100%", b"1"),
        (b"SEARCH BODY 1_0", b""),
        (b"SEARCH TEXT bob", b"1 2"),
        (b"SEARCH TEXT x-chat", b"2"),
        (b"SEARCH OR SEEN SUBJECT hello", b"1 2"),
        (b"SEARCH NOT (SEEN FROM bob)", b"1"),
        (b"SEARCH NOT NOT SEEN", b"2"),
        (b"SEARCH SENTON 14-Nov-2023", b"1"),
        (b'SEARCH SENTBEFORE "15-Nov-2023"', b"1"),
        (b"SEARCH SENTSINCE 15-Nov-2023", b""),
        (b"SEARCH NOT SENTON 14-Nov-2023", b"2"),
        (b"SEARCH ON 14-Nov-2023", b"1"),
        (b"SEARCH SINCE 14-Nov-2023", b"1 2"),
        (b"SEARCH SINCE 15-nov-2023", b"2"),
        (b"SEARCH BEFORE 15-Nov-2023", b"1"),
        (b"SEARCH LARGER 100", b"1"),
        (b"SEARCH SMALLER 100", b"2"),
        (b"SEARCH 2:* UNDELETED", b"2"),
        (b"SEARCH 1,2 NOT 1", b"2"),
        (b"SEARCH *", b"2"),
        (b"SEARCH 3:5", b""),
        (b"UID SEARCH UID 7:*", b"7"),
        (b"UID SEARCH UID 9:*", b"7"),
        (b"SEARCH UID 2:6", b""),
        (b"SEARCH UID 7", b"2"),
        (b"SEARCH CHARSET US-ASCII (FROM bob) (SEEN)", b"2"),
    ],
)
def test_search(client: Client, command: bytes, found: bytes) -> None:
    answer = b" ".join([b"* SEARCH", *found.split()])
    assert client.send(b"s " + command + b"\r\n") == answer + b"\r\ns OK SEARCH completed\r\n"


def test_search_with_a_synchronizing_literal(client: Client) -> None:
    assert client.send(b"s SEARCH CHARSET UTF-8 SUBJECT {7}\r\n") == b"+ Ready for 7 octets of text\r\n"
    assert client.send(b"gr\xc3\xbc\xc3\x9fe\r\n") == b"* SEARCH 1\r\ns OK SEARCH completed\r\n"


def test_search_does_not_see_messages_not_reported_yet(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    assert client.send(b"s SEARCH ALL\r\n") == (
        b"* SEARCH 1 2\r\n* 3 EXISTS\r\n* 1 RECENT\r\ns OK SEARCH completed\r\n"
    )
    assert client.send(b"s SEARCH ALL\r\n") == b"* SEARCH 1 2 3\r\ns OK SEARCH completed\r\n"


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (b"SEARCH BOGUS", b"BAD unknown SEARCH key BOGUS"),
        (b"SEARCH SINCE yesterday", b"BAD bad SEARCH date, e.g. 5-Mar-2024"),
        (b"SEARCH ON 31-Foo-2023", b"BAD bad SEARCH date, e.g. 5-Mar-2024"),
        (b"SEARCH FROM", b"BAD SEARCH FROM wants an argument"),
        (b"SEARCH LARGER x", b"BAD SEARCH size expected"),
        (b"SEARCH (SEEN", b"BAD ) after SEARCH keys expected"),
        (b"SEARCH CHARSET KOI8-R ALL", b"NO [BADCHARSET (US-ASCII UTF-8)] unsupported charset"),
    ],
)
def test_search_errors(client: Client, command: bytes, answer: bytes) -> None:
    assert client.send(b"s " + command + b"\r\n") == b"s " + answer + b"\r\n"
