"""IMAP under attack, through a StringTransport: every line, literal, set and nesting is bounded.

Each limit comes from ``Limits`` (or ``max_message_size``) and is answered with the protocol's
reply, never an exception or unbounded buffering.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import fail

from ygbridge.errors import LoginThrottled
from ygbridge.limits import Limits
from ygbridge.testing.imap import MAX_MESSAGE_SIZE, Client, ImapLab
from ygbridge.testing.store import alice_database

LIMITS = Limits(imap_line=1000, imap_literal=100, sequence_ranges=50, search_nesting=5, search_keys=60)


@pytest.fixture
def lab() -> Iterator[ImapLab]:
    for _ in alice_database("sqlite"):
        yield ImapLab(LIMITS)


@pytest.fixture
def client(lab: ImapLab) -> Client:
    return lab.client()


def closed_after(client: Client, answer: bytes, reply: bytes) -> None:
    assert answer == reply
    assert client.transport.disconnecting


# Lines


def test_a_line_without_end_is_cut_off_at_the_limit(client: Client) -> None:
    assert client.send(b"a NOOP" + b"x" * 900) == b""
    assert client.send(b"x" * 200) == (
        b"a BAD Command line too long (at most 1000 octets)\r\n* BYE Command line too long\r\n"
    )
    assert client.transport.disconnecting
    assert client.send(b"b NOOP\r\n") == b""  # nothing more is read
    assert len(client.server._input) <= LIMITS.imap_line + 200


def test_a_long_line_is_bad_and_closes(client: Client) -> None:
    closed_after(
        client,
        client.send(b"a LOGIN " + b"x" * 2000 + b"\r\n"),
        b"a BAD Command line too long (at most 1000 octets)\r\n* BYE Command line too long\r\n",
    )


def test_a_closing_connection_lets_go_of_its_producer_and_keeps_nothing(lab: ImapLab, client: Client) -> None:
    """A TLS transport closes only once no producer is registered; a client that never lets it
    close (no close_notify, nothing read) is cut off; what it still sends is not kept."""
    client.send(b"a LOGIN " + b"x" * 2000 + b"\r\n")
    assert client.transport.disconnecting and client.transport.producer is None
    client.send(b"x" * LIMITS.imap_line)
    assert len(client.server._input) == 0
    lab.clock.advance(client.server.CLOSE_TIMEOUT - 1)
    assert not client.transport.disconnected
    lab.clock.advance(1)
    assert client.transport.disconnected  # aborted
    sending = lab.client()
    sending.send(b"a LOGIN " + b"x" * 2000 + b"\r\n")
    sending.send(b"x" * LIMITS.imap_line)
    assert not sending.transport.disconnected
    sending.send(b"x")
    assert sending.transport.disconnected  # more than a line's worth after the BYE


def test_lines_of_one_command_count_together(client: Client) -> None:
    line = b"s SEARCH CHARSET UTF-8" + b" SUBJECT {1+}\r\nx" * 40
    assert client.send(b"a LOGIN alice secret\r\ns SELECT INBOX\r\n").endswith(b"SELECT completed\r\n")
    assert client.send(line + b"\r\n") == b"* SEARCH\r\ns OK SEARCH completed\r\n"  # 40 literals: 40 octets
    answer = client.send(b"s SEARCH" + b" SUBJECT {1+}\r\nx" * 80 + b"\r\n")
    assert answer.startswith(b"s BAD Command line too long")


def test_a_line_arriving_byte_by_byte(client: Client) -> None:
    for byte in b"a LOGIN alice secret\r":
        assert client.send(bytes([byte])) == b""
    assert client.send(b"\n").startswith(b"a OK [CAPABILITY ")


def test_an_idle_client_line_is_bounded_too(client: Client) -> None:
    client.send(b"a LOGIN alice secret\r\ns SELECT INBOX\r\n")
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n"
    assert client.send(b"D" * 1500).startswith(b"* BAD Command line too long")
    assert client.transport.disconnecting


# Literals


def test_literal_length_beyond_any_number_is_bad_and_closes(client: Client) -> None:
    closed_after(
        client,
        client.send(b"a LOGIN {" + b"9" * 500 + b"}\r\n"),
        b"a BAD Literal length out of range\r\n* BYE Cannot find the end of that literal\r\n",
    )


@pytest.mark.parametrize("command", [b"a LOGIN ", b"a APPEND INBOX "])
@pytest.mark.parametrize("plus", [b"", b"+"])
def test_a_5000_digit_literal_length_is_bad_and_closes(command: bytes, plus: bytes) -> None:
    """Issue 7: within the default line limit (64 KiB), so that the length itself is refused."""
    for _ in alice_database("sqlite"):
        client = ImapLab(Limits()).client()
        closed_after(
            client,
            client.send(command + b"{" + b"9" * 5000 + plus + b"}\r\n"),
            b"a BAD Literal length out of range\r\n* BYE Cannot find the end of that literal\r\n",
        )


def test_synchronizing_string_literal_too_long_is_refused_before_it_is_sent(client: Client) -> None:
    assert client.send(b"a LOGIN {101}\r\n") == b"a BAD Literal too long (at most 100 octets)\r\n"
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"
    assert client.send(b"a LOGIN {60}\r\n") == b"+ Ready for 60 octets of text\r\n"
    assert client.send(b"x" * 60 + b" {41}\r\n") == b"a BAD Literal too long (at most 100 octets)\r\n"


def test_non_synchronizing_literal_too_long_is_skipped_not_kept(client: Client) -> None:
    assert client.send(b"a LOGIN {200+}\r\n") == b""
    assert client.send(b"y" * 200) == b""
    assert b"y" not in client.server._command  # nothing of it was kept
    assert client.send(b" {3+}\r\nxyz\r\nn NOOP\r\n") == (
        b"a BAD Literal too long (at most 100 octets)\r\nn OK NOOP completed\r\n"
    )
    assert client.send(b"a LOGIN {201+}\r\n") == (
        b"a BAD Literal too long (at most 100 octets)\r\n* BYE Literal too long to skip\r\n"
    )


def test_append_over_the_size_limit_is_toobig_before_the_literal(client: Client) -> None:
    client.send(b"a LOGIN alice secret\r\n")
    toobig = b"p NO [TOOBIG] messages are limited to %d octets here\r\n" % MAX_MESSAGE_SIZE
    assert client.send(b"p APPEND INBOX {%d}\r\n" % (MAX_MESSAGE_SIZE + 1)) == toobig
    assert client.send(b"p APPEND INBOX (\\Seen) {%d+}\r\n" % (MAX_MESSAGE_SIZE + 1)) == b""
    assert client.send(b"z" * (MAX_MESSAGE_SIZE + 1) + b"\r\n") == toobig
    assert client.send(b"p APPEND INBOX {%d+}\r\n" % (2 * MAX_MESSAGE_SIZE + 1)) == (
        toobig + b"* BYE Literal too long to skip\r\n"
    )
    assert client.transport.disconnecting


def test_append_at_the_size_limit_and_a_mailbox_literal(client: Client) -> None:
    client.send(b"a LOGIN alice secret\r\n")
    message = b"S: x\r\n\r\n" + b"b" * (MAX_MESSAGE_SIZE - 8)
    assert client.send(b"p APPEND {5}\r\n") == b"+ Ready for 5 octets of text\r\n"
    assert client.send(b"INBOX {%d}\r\n" % len(message)) == b"+ Ready for %d octets of data\r\n" % len(
        message
    )
    assert client.send(message + b"\r\n") == b"p OK [APPENDUID 1700000000 1] APPEND completed\r\n"


# Sets, nesting


def test_sequence_sets_beyond_the_range_limit_are_bad(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.send(b"a LOGIN alice secret\r\ns SELECT INBOX\r\n")
    many = b",".join(b"%d" % n for n in range(1, 102, 2))  # 51 ranges
    assert (
        client.send(b"f UID FETCH " + many + b" UID\r\n")
        == b"f BAD sequence set with more than 50 ranges\r\n"
    )
    assert (
        client.send(b"s SEARCH UID " + many + b"\r\n") == b"s BAD sequence set with more than 50 ranges\r\n"
    )
    assert (
        client.send(b"f UID FETCH " + many[:-4] + b" UID\r\n")
        == b"* 1 FETCH (UID 1)\r\nf OK FETCH completed\r\n"
    )


def test_deep_search_nesting_is_bad(client: Client, lab: ImapLab) -> None:
    client.send(b"a LOGIN alice secret\r\ns SELECT INBOX\r\n")
    assert (
        client.send(b"s SEARCH " + b"(" * 5 + b"ALL" + b")" * 5 + b"\r\n")
        == b"* SEARCH\r\ns OK SEARCH completed\r\n"
    )
    assert client.send(b"s SEARCH " + b"(" * 400 + b"ALL" + b")" * 400 + b"\r\n") == (
        b"s BAD SEARCH keys nested more than 5 deep\r\n"
    )
    assert (
        client.send(b"s SEARCH " + b"NOT " * 200 + b"ALL\r\n")
        == b"s BAD SEARCH keys nested more than 5 deep\r\n"
    )
    assert (
        client.send(b"s SEARCH " + b"OR ALL " * 100 + b"ALL\r\n")
        == b"s BAD SEARCH keys nested more than 5 deep\r\n"
    )


def test_a_6000_element_uid_set_with_the_default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in alice_database("sqlite"):
        lab = ImapLab()
        for _ in range(20):
            lab.deliver()
        client = lab.client()
        client.select()
        uids = b",".join(b"%d" % n for n in range(1, 12001, 2))
        assert client.send(b"s UID SEARCH UID " + uids + b"\r\n") == (
            b"* SEARCH " + b" ".join(b"%d" % n for n in range(1, 21, 2)) + b"\r\ns OK SEARCH completed\r\n"
        )
        assert client.send(b"f UID FETCH " + uids + b" UID\r\n").count(b" FETCH (UID ") == 10
        assert (
            client.send(b"t UID STORE " + uids + b" +FLAGS.SILENT (\\Seen)\r\n")
            == b"t OK STORE completed\r\n"
        )
        assert client.send(b"s SEARCH " + b"SEEN " * 999 + b"ALL\r\n").startswith(b"* SEARCH 1 3 5")
        assert (
            client.send(b"s SEARCH " + b"SEEN " * 1000 + b"ALL\r\n")
            == b"s BAD more than 1000 SEARCH keys\r\n"
        )
        most = b",".join(b"%d" % n for n in range(1, 20001, 2))  # 10,000 ranges, the default limit
        assert client.send(b"s UID SEARCH UID " + most + b"\r\n").endswith(
            b"* SEARCH 1 3 5 7 9 11 13 15 17 19\r\ns OK SEARCH completed\r\n"
        )
        assert client.send(b"s UID SEARCH UID " + most + b",30000\r\n") == (
            b"s BAD sequence set with more than 10000 ranges\r\n"
        )


# Logins through the LoginGate


class RefusingGate:
    """A LoginGate that fails every login with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sources: list[str] = []

    def login(self, portal: object, source: str, credentials: object, interface: object) -> object:
        self.sources.append(source)
        return fail(self.error)


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (LoginThrottled("slow down"), b"a NO [UNAVAILABLE] Too many failed logins: try again later\r\n"),
        (UnauthorizedLogin("no"), b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
    ],
)
def test_logins_go_through_the_gate(error: Exception, answer: bytes) -> None:
    gate = RefusingGate(error)
    for _ in alice_database("sqlite"):
        client = ImapLab(logins=gate).client()  # type: ignore[arg-type]
        assert client.send(b"a LOGIN alice secret\r\n") == answer
        assert gate.sources == [client.transport.getPeer().host]
