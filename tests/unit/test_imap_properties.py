"""Property-based tests of the IMAP command and sequence-set parsers (hypothesis).

Whatever a client sends, no exception escapes and every reply is protocol-correct: untagged
(``*``), a continuation (``+``), or the command's tagged OK, NO or BAD. The normal run tries
200 cases each; ``HYPOTHESIS_PROFILE=thorough`` tries 10,000 (tests/unit/conftest.py).
"""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ygbridge.errors import BadCommand
from ygbridge.imap.wire import MAX_NUMBER, parse_sequence_set
from ygbridge.limits import Limits
from ygbridge.testing.imap import ImapLab
from ygbridge.testing.store import alice_database

#: The thorough run (10,000 cases a test) takes minutes a test: more than the default timeout.
pytestmark = pytest.mark.timeout(3600 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 300)
LIMITS = Limits(imap_line=4096, imap_literal=512, sequence_ranges=100, search_nesting=8)
COMMANDS = [
    b"CAPABILITY", b"NOOP", b"LOGOUT", b"LOGIN", b"AUTHENTICATE", b"ID", b"ENABLE", b"IDLE",
    b"NAMESPACE", b"SELECT", b"EXAMINE", b"STATUS", b"APPEND", b"CREATE", b"DELETE", b"RENAME",
    b"SUBSCRIBE", b"UNSUBSCRIBE", b"LIST", b"LSUB", b"CHECK", b"FETCH", b"STORE", b"SEARCH",
    b"COPY", b"MOVE", b"EXPUNGE", b"UID", b"CLOSE", b"UNSELECT", b"STARTTLS", b"FROB",
]  # fmt: skip
WORDS = [
    b"INBOX", b"Sent", b"NIL", b"(", b")", b"[", b"]", b"<0.5>", b"*", b"%", b"1:*", b"FLAGS",
    b"+FLAGS.SILENT", b"(\\Seen)", b"BODY[]", b"BODY.PEEK[HEADER.FIELDS (From)]", b"ALL", b"FAST",
    b"UID", b"CHARSET", b"UTF-8", b"NOT", b"OR", b"SUBJECT", b"SINCE", b"1-Jan-2024", b"LARGER",
    b"MESSAGES", b"PLAIN", b"DONE", b'"05-Mar-2024 10:30:00 +0100"', b"&AOk-", b"\\", b'"',
]  # fmt: skip

_atoms = st.one_of(st.sampled_from(WORDS), st.binary(min_size=1, max_size=12))
_numbers = st.one_of(st.integers(0, 20), st.integers(0, MAX_NUMBER + 10), st.integers(0, 10**30)).map(
    lambda n: b"%d" % n
)
_quoted = st.binary(max_size=20).map(
    lambda data: b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
)
_literals = st.tuples(st.binary(max_size=40), st.booleans(), st.integers(-3, 3)).map(
    lambda t: b"{%d%b}\r\n%b" % (max(len(t[0]) + t[2], 0), b"+" if t[1] else b"", t[0])
)
_sets = st.lists(st.one_of(_numbers, st.just(b"*")), min_size=1, max_size=6).map(
    lambda parts: b",".join(b":".join(parts[i : i + 2]) for i in range(0, len(parts), 2))
)
_tokens = st.one_of(_atoms, _numbers, _quoted, _literals, _sets)
_arguments = st.lists(_tokens, max_size=8).map(b" ".join)
_commands = st.tuples(
    st.sampled_from([b"a1", b"t", b"+", b"", b"x*"]),
    st.one_of(st.sampled_from(COMMANDS), st.binary(max_size=6)),
    _arguments,
).map(lambda t: b"%b %b %b\r\n" % t)

_RESPONSE = re.compile(rb"(?:\* |\+ |\+$|[^ \r\n]+ (?:OK|NO|BAD)( |$))")
_LITERAL_END = re.compile(rb"\{(\d+)\}$")


def response_lines(data: bytes) -> list[bytes]:
    """The response lines of ``data``, each literal in them skipped; the last must be complete."""
    lines, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        line = data[pos:end]
        pos = end + 2
        while literal := _LITERAL_END.search(line):
            pos += int(literal[1])  # the literal's octets, then the line goes on
            end = data.index(b"\r\n", pos)
            line, pos = line[: literal.start()] + b"LITERAL" + data[pos:end], end + 2
        lines.append(line)
    return lines


def check_session(commands: list[bytes]) -> None:
    """Send ``commands`` to a logged-in session with INBOX selected; check every reply."""
    for _ in alice_database("sqlite"):
        lab = ImapLab(LIMITS)
        lab.deliver()
        lab.deliver(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart\r\n--b--\r\n")
        client = lab.client()
        client.select()
        with capture_logs() as logs:
            for command in commands:
                if client.transport.disconnecting:
                    break
                answer = client.send(command)
                for line in response_lines(answer):
                    assert _RESPONSE.match(line), (command, answer)
        assert not [entry for entry in logs if entry["log_level"] == "error"], logs
        client.disconnect()


@given(st.lists(_commands, min_size=1, max_size=4))
def test_any_command_gets_a_protocol_correct_answer(commands: list[bytes]) -> None:
    check_session(commands)


@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_any_bytes_get_a_protocol_correct_answer(chunks: list[bytes]) -> None:
    check_session([*chunks, b"\r\n"])


@given(st.sampled_from([b"FETCH", b"UID FETCH", b"UID STORE", b"SEARCH UID", b"COPY"]), _sets)
def test_sequence_sets_in_commands(command: bytes, ids: bytes) -> None:
    tail = {b"UID STORE": b" +FLAGS (x)", b"COPY": b" Trash", b"SEARCH UID": b""}.get(command, b" UID")
    check_session([b"c %b %b%b\r\n" % (command, ids, tail)])


@given(st.binary(max_size=80) | st.text("0123456789:*,", max_size=80).map(str.encode))
def test_sequence_set_parser_returns_ranges_or_bad(text: bytes) -> None:
    try:
        parsed = parse_sequence_set(text, 10)
    except BadCommand:
        return
    assert 1 <= len(parsed.ranges) <= 10
    for low, high in parsed.ranges:
        for end in (low, high):
            assert end is None or 1 <= end <= MAX_NUMBER


@given(st.lists(st.tuples(st.integers(1, MAX_NUMBER), st.integers(1, MAX_NUMBER) | st.none()), min_size=1))
def test_sequence_sets_round_trip(ranges: list[tuple[int, int | None]]) -> None:
    text = b",".join(b"%d" % low if high == low else b"%d:%b" % (low, b"*" if high is None else b"%d" % high)
                     for low, high in ranges)  # fmt: skip
    assert parse_sequence_set(text, len(ranges)).ranges == tuple(ranges)


def test_response_lines_skip_literals() -> None:
    assert response_lines(b"* 1 FETCH (BODY[] {5}\r\na\r\nb\r FLAGS ())\r\nf OK done\r\n") == [
        b"* 1 FETCH (BODY[] LITERAL FLAGS ())",
        b"f OK done",
    ]
