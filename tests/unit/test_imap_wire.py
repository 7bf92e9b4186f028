"""IMAP's grammar on the wire (RFC 3501 section 9, RFC 7888): strings, literals, mailbox names, numbers.

Through the server (StringTransport + Clock) where the reply is what matters, and through
imap.wire's Parser for the productions themselves.
"""

from __future__ import annotations

import base64

import pytest

from ygbridge.errors import BadCommand
from ygbridge.imap.fetchitems import FetchItem, Section, parse_fetch_items
from ygbridge.imap.wire import (
    Parser,
    SequenceSet,
    appends_message,
    command_tag,
    decode_mailbox,
    encode_mailbox,
    parse_sequence_set,
    quoted,
)
from ygbridge.limits import Limits
from ygbridge.testing.imap import Client, ImapLab, first_client, running_lab
from ygbridge.testing.store import make_user

lab = pytest.fixture(running_lab, name="lab")
client = pytest.fixture(first_client, name="client")

#: A password with every character a quoted string must escape, a space and non-ASCII.
PASSWORD = 'p"a\\ss wörd'


def as_quoted(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@pytest.fixture
def carol(lab: ImapLab) -> ImapLab:
    make_user("carol")
    lab.checker.addUser(b"carol", PASSWORD.encode())
    return lab


# Passwords: quoted with escapes, literal, LITERAL+, AUTHENTICATE PLAIN


def test_login_with_escapes_in_a_quoted_password(carol: ImapLab, client: Client) -> None:
    assert client.send(b"a LOGIN carol " + as_quoted(PASSWORD) + b"\r\n").startswith(b"a OK [CAPABILITY ")


def test_login_with_the_password_as_literal(carol: ImapLab, client: Client) -> None:
    password = PASSWORD.encode()
    assert client.send(
        b"a LOGIN carol {%d}\r\n" % len(password)
    ) == b"+ Ready for %d octets of text\r\n" % len(password)
    assert client.send(password + b"\r\n").startswith(b"a OK [CAPABILITY ")
    other = carol.client()
    assert other.send(b"b LOGIN {5+}\r\ncarol {%d+}\r\n%b\r\n" % (len(password), password)).startswith(
        b"b OK "
    )


def test_authenticate_plain_with_the_same_password(carol: ImapLab, client: Client) -> None:
    response = base64.b64encode(b"\0carol\0" + PASSWORD.encode())
    assert client.send(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert client.send(response + b"\r\n").startswith(b"a OK [CAPABILITY ")


def test_a_wrong_escape_is_bad_and_a_wrong_password_no(carol: ImapLab, client: Client) -> None:
    assert client.send(b'a LOGIN carol "p\\a"\r\n') == (
        b'a BAD unterminated quoted string, or \\ before other than " or \\\r\n'
    )
    assert client.send(b'a LOGIN carol "p\\"a\\\\ss"\r\n') == b""
    carol.clock.advance(Limits().login_delay_max)
    assert client.received() == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert client.send(b'a LOGIN carol "unterminated\r\n').startswith(b"a BAD unterminated quoted string")


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        (b"*", b"a BAD Authentication cancelled"),
        (b"not base64!", b"a BAD Malformed PLAIN response"),
        (base64.b64encode(b"no separators"), b"a BAD Malformed PLAIN response"),
        (base64.b64encode(b"bob\0alice\0secret"), b"a NO [AUTHORIZATIONFAILED] Cannot act as another user"),
    ],
)
def test_authenticate_plain_errors(client: Client, response: bytes, answer: bytes) -> None:
    client.send(b"a AUTHENTICATE PLAIN\r\n")
    assert client.send(response + b"\r\n") == answer + b"\r\n"
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"


def test_authenticate_with_initial_response_and_unknown_mechanism(client: Client) -> None:
    assert (
        client.send(b"a AUTHENTICATE CRAM-MD5\r\n")
        == b"a NO Unsupported authentication mechanism (PLAIN is)\r\n"
    )
    response = base64.b64encode(b"\0alice\0secret")
    assert client.send(b"a AUTHENTICATE plain " + response + b"\r\n").startswith(b"a OK ")


# Mailbox names: quoted, escaped, modified UTF-7 (RFC 3501 5.1.3)

ODD_NAME = 'Odd "quoted\\ Café & more'


def test_mailbox_with_quotes_backslash_space_and_non_ascii(client: Client) -> None:
    client.login()
    wire = encode_mailbox(ODD_NAME)
    assert wire == b'"Odd \\"quoted\\\\ Caf&AOk- &- more"'
    assert client.send(b"c CREATE " + wire + b"\r\n") == b"c OK CREATE completed\r\n"
    listed = client.send(b'l LIST "" "Odd*"\r\n')
    assert listed == b'* LIST (\\HasNoChildren) "/" ' + wire + b"\r\nl OK LIST completed\r\n"
    assert client.send(b"s SELECT " + wire + b"\r\n").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    assert client.send(b"t STATUS " + wire + b" (MESSAGES)\r\n").startswith(
        b"* STATUS " + wire + b" (MESSAGES 0)"
    )
    literal = ODD_NAME.encode("imap4-utf-7")
    assert client.send(b"d DELETE {%d+}\r\n%b\r\n" % (len(literal), literal)) == b"d OK DELETE completed\r\n"
    assert client.send(b'l LIST "" "Odd*"\r\n') == b"l OK LIST completed\r\n"


def test_mailbox_names_that_are_not_modified_utf7_are_bad(client: Client) -> None:
    client.login()
    for name in (b'"Caf\xc3\xa9"', b"a&b", b"&AGE-", b'"&"'):
        assert client.send(b"c CREATE " + name + b"\r\n") == (
            b"c BAD mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)\r\n"
        )


def test_inbox_in_any_case(client: Client) -> None:
    client.login()
    assert client.send(b'e EXAMINE "iNbOx"\r\n').endswith(b"e OK [READ-ONLY] EXAMINE completed\r\n")


# SEARCH strings: quoted with escapes as the literal form


def test_search_quoted_with_escapes_matches_like_the_literal(client: Client, lab: ImapLab) -> None:
    lab.deliver(b"Subject: files in C:\\temp\\new\r\n\r\nbody\r\n")
    lab.deliver(b'Subject: other\r\n\r\nsay "hi"\r\n')
    client.select()
    assert client.send(b's SEARCH SUBJECT "C:\\\\temp"\r\n') == b"* SEARCH 1\r\ns OK SEARCH completed\r\n"
    assert client.send(b"s SEARCH SUBJECT {7+}\r\nC:\\temp\r\n") == b"* SEARCH 1\r\ns OK SEARCH completed\r\n"
    assert client.send(b's SEARCH BODY "\\"hi\\""\r\n') == b"* SEARCH 2\r\ns OK SEARCH completed\r\n"


# FETCH items


def test_fetch_header_fields_as_quoted_strings(client: Client, lab: ImapLab) -> None:
    lab.deliver(b"From: a@b\r\nSubject: s\r\n\r\nx\r\n")
    client.select()
    assert client.send(b'f FETCH 1 (BODY.PEEK[HEADER.FIELDS ("subject")])\r\n') == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {14}\r\nSubject: s\r\n\r\n)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 1 FAST\r\n").startswith(b"* 1 FETCH (FLAGS () INTERNALDATE ")


@pytest.mark.parametrize(
    "items",
    [b"(FLAGS", b"BODY[HEADER.FIELDS]", b"BODY[1.MIMEX]", b"BODY[]<1.0>", b"BOGUS", b"()", b"BODY[0]"],
)
def test_malformed_fetch_items_are_bad(client: Client, lab: ImapLab, items: bytes) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"f FETCH 1 " + items + b"\r\n").startswith(b"f BAD ")


def test_fetch_item_parser() -> None:
    def parsed(text: bytes) -> list[FetchItem]:
        reader = Parser(text)
        items = parse_fetch_items(reader)
        reader.end()
        return items

    assert parsed(b"BODY.PEEK[1.2.HEADER.FIELDS.NOT (X-A x-b)]<0.100>") == [
        FetchItem("BODY", Section((1, 2), "HEADER.FIELDS.NOT", (b"X-A", b"X-B")), peek=True, partial=(0, 100))
    ]
    assert parsed(b"full")[-1] == FetchItem("BODY")
    assert parsed(b"(rfc822.size uid BODY[])") == [
        FetchItem("RFC822.SIZE"),
        FetchItem("UID"),
        FetchItem("BODY", Section()),
    ]


# Numbers and sequence sets


def test_sequence_sets_parse_as_ranges() -> None:
    assert parse_sequence_set(b"1:3,7,9:*,*", 10) == SequenceSet(((1, 3), (7, 7), (9, None), (None, None)))
    assert parse_sequence_set(b"4294967295", 1).ranges == ((4294967295, 4294967295),)
    for bad in (b"0", b"1,,2", b"1:2:3", b"4294967296", b"1" * 5000, b":", b"01", b"1,", b"**"):
        with pytest.raises(BadCommand):
            parse_sequence_set(bad, 10)
    with pytest.raises(BadCommand, match="more than 3 ranges"):
        parse_sequence_set(b"1,2,3,4", 3)


def test_oversized_numbers_are_bad(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    huge = b"9" * 5000
    assert client.send(b"f FETCH 4294967296 FLAGS\r\n") == (
        b"f BAD sequence set: number out of range (at most 4294967295)\r\n"
    )
    assert client.send(b"f FETCH " + huge + b" FLAGS\r\n").startswith(b"f BAD ")
    assert client.send(b"s SEARCH LARGER " + huge + b"\r\n") == (
        b"s BAD SEARCH size: number out of range (at most 4294967295)\r\n"
    )
    assert client.send(b"f FETCH 1 BODY[]<" + huge + b".1>\r\n").startswith(b"f BAD ")
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"


def test_parser_productions() -> None:
    reader = Parser(b'atom "q\\"s" {3}\r\nlit NIL ("x" NIL)')
    assert reader.astring() == b"atom"
    reader.sp()
    assert reader.astring() == b'q"s'
    reader.sp()
    assert reader.astring() == b"lit"
    reader.sp()
    assert reader.nstring() is None
    reader.sp()
    assert reader.parenthesised(reader.nstring, "pairs") == [b"x", None]
    reader.end()
    with pytest.raises(BadCommand, match="literal shorter"):
        Parser(b"{9}\r\nabc").literal()
    assert quoted(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert quoted(b"line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert decode_mailbox(b"Caf&AOk-") == "Café"
    assert command_tag(b"a1 NOOP") == b"a1" and command_tag(b"NOOP") == b"*" and command_tag(b"+x y") == b"*"


def test_append_literal_roles() -> None:
    assert appends_message(b"a APPEND INBOX ")
    assert appends_message(b"a APPEND {5}\r\nINBOX (\\Seen) ")
    assert not appends_message(b"a APPEND ")  # the mailbox name
    assert not appends_message(b"a LOGIN ")
    assert not appends_message(b"a SEARCH SUBJECT ")


def test_commands_in_the_wrong_state(client: Client) -> None:
    assert client.send(b"s SELECT INBOX\r\n") == b"s BAD SELECT needs a login first\r\n"
    assert client.send(b's LIST "" *\r\n') == b"s BAD LIST needs a login first\r\n"
    client.login()
    assert client.send(b"l LOGIN alice secret\r\n") == b"l BAD LOGIN is only valid before login\r\n"
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n"
    assert client.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"
    assert client.send(b"NOOP\r\n* NOOP\r\n") == b"* BAD a command starts with a tag\r\n" * 2
    assert client.send(b"\r\n") == b""  # an empty line is no command


def test_search_dates_at_the_edges(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"s SEARCH SINCE 31-Dec-9999\r\n") == b"s BAD SEARCH dates end before 31-Dec-9999\r\n"
    assert client.send(b"s SEARCH BEFORE 30-Dec-9999\r\n") == b"* SEARCH 1\r\ns OK SEARCH completed\r\n"
    assert client.send(b"s SEARCH SENTON 1-Jan-0001\r\n") == b"* SEARCH\r\ns OK SEARCH completed\r\n"
    assert client.send(b"s SEARCH ON 1-Jan-0000\r\n") == b"s BAD bad SEARCH date, e.g. 5-Mar-2024\r\n"
