"""FETCH, STORE, COPY, MOVE and EXPUNGE, line by line through a StringTransport."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from ygbridge.imap import selected_commands
from ygbridge.imap.message import select_fields
from ygbridge.message import header_fields, split_message
from ygbridge.testing.imap import MESSAGE, Client, ImapLab, first_client, running_lab

lab = pytest.fixture(running_lab, name="lab")
client = pytest.fixture(first_client, name="client")


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%b" % (len(data), data)


# FETCH


def test_fetch_header_fields_keeps_raw_bytes_and_does_not_set_seen(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    fields = b"FROM: Alice <alice@example.meship>\r\nsubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n"
    assert client.send(b"f FETCH 1 (BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] %b)\r\nf OK FETCH completed\r\n" % literal(fields)
    )
    rest = b"Received: from a\r\n\tby b\r\nReceived: from c\r\nMessage-ID: <1@example.meship>\r\n\r\n"
    assert client.send(b"f UID FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)])\r\n") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (FROM SUBJECT)] %b UID 1)\r\nf OK FETCH completed\r\n"
        % literal(rest)
    )
    assert client.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"


def test_fetch_header_and_size_are_raw(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    header = literal(split_message(MESSAGE)[0])
    assert client.send(b"f FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER] RFC822.HEADER)\r\n") == (
        b"* 1 FETCH (RFC822.SIZE %d BODY[HEADER] %b RFC822.HEADER %b)\r\nf OK FETCH completed\r\n"
        % (len(MESSAGE), header, header)
    )


def test_fetch_body_sets_seen_and_reports_flags(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    other = lab.client()
    other.select()
    client.select()
    assert client.send(b"f FETCH 1 (BODY[])\r\n") == (
        b"* 1 FETCH (BODY[] %b FLAGS (\\Seen))\r\nf OK FETCH completed\r\n" % literal(MESSAGE)
    )
    assert client.send(
        b"f FETCH 1 (BODY[])\r\n"
    ) == b"* 1 FETCH (BODY[] %b)\r\nf OK FETCH completed\r\n" % literal(MESSAGE)
    assert other.send(b"n NOOP\r\n") == b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\nn OK NOOP completed\r\n"


@pytest.mark.parametrize("item", [b"RFC822", b"RFC822.TEXT", b"BODY[TEXT]", b"BODY[1]"])
def test_fetch_items_that_set_seen(client: Client, lab: ImapLab, item: bytes) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"f FETCH 1 %b\r\n" % item).endswith(b" FLAGS (\\Seen))\r\nf OK FETCH completed\r\n")


@pytest.mark.parametrize("item", [b"RFC822.HEADER", b"BODY.PEEK[]", b"BODY", b"BODYSTRUCTURE", b"ENVELOPE"])
def test_fetch_items_that_leave_seen(client: Client, lab: ImapLab, item: bytes) -> None:
    lab.deliver()
    client.select()
    client.send(b"f FETCH 1 %b\r\n" % item)
    assert client.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"


def test_fetch_many_in_batches(client: Client, lab: ImapLab) -> None:
    for n in range(450):
        lab.deliver(b"Subject: %d\r\n\r\nx\r\n" % n)
    client.select()
    answer = client.send(b"f FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])\r\nn NOOP\r\n")
    assert answer.count(b" FLAGS (\\Seen))\r\n") == 450
    assert (
        b"* 450 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: 449\r\n\r\n FLAGS (\\Seen))" in answer
    )
    assert answer.endswith(b"f OK FETCH completed\r\nn OK NOOP completed\r\n")


def test_fetch_bodies_a_budget_at_a_time(
    client: Client, lab: ImapLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selected_commands, "FETCH_BYTES", 10)  # one message per database read
    calls = []
    fetch = lab.mailhub.fetch

    async def counted(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["max_bytes"])
        return await fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lab.mailhub, "fetch", counted)
    for n in range(5):
        lab.deliver(b"Subject: %d\r\n\r\nbody\r\n" % n)
    client.select()
    client.send(b"s STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    answer = client.send(b"f FETCH 1:* BODY.PEEK[TEXT]\r\n")
    assert answer.count(b" FETCH (BODY[TEXT] {6}\r\nbody\r\n)\r\n") == 4
    assert calls == [10, 10, 10, 10]


class FillingTransport(StringTransport):
    """Once ``full`` is set, a transport whose buffer is full after every write until resumed."""

    full = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.full and self.producer is not None:
            self.producer.pauseProducing()


def test_fetch_waits_while_the_transport_is_full(lab: ImapLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selected_commands, "SUMMARY_BATCH", 2)
    for _ in range(5):
        lab.deliver()
    transport = FillingTransport()
    client = Client(lab.factory, transport)
    client.select()
    transport.full = True
    assert client.send(b"f FETCH 1:* UID\r\nn NOOP\r\n") == b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n"
    producer = transport.producer
    assert producer is not None
    producer.resumeProducing()  # the buffer drained
    assert client.received() == b"* 3 FETCH (UID 3)\r\n* 4 FETCH (UID 4)\r\n"
    producer.resumeProducing()
    assert client.received() == b"* 5 FETCH (UID 5)\r\nf OK FETCH completed\r\n"
    assert transport.producerState == "paused"  # no more commands are read while the client does not read
    producer.resumeProducing()
    assert client.received() == b"n OK NOOP completed\r\n"


def test_fetch_parts_and_partial(client: Client, lab: ImapLab) -> None:
    multipart = (
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFirst \xc3\xa9\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
        b"--b1--\r\n"
    )
    lab.deliver(multipart)
    client.select()
    assert client.send(b"f FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<2.5> BODY.PEEK[3])\r\n") == (
        b"* 1 FETCH (BODY[1] {8}\r\nFirst \xc3\xa9 "
        b"BODY[2.MIME] {77}\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n "
        b"BODY[]<2> {5}\r\nntent BODY[3] NIL)\r\n"
        b"f OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 1 (BODYSTRUCTURE)\r\n") == (
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 8 1 NIL NIL NIL NIL) '
        b'("application" "octet-stream" NIL NIL NIL "base64" 4 NIL NIL NIL NIL) '
        b'"mixed" ("boundary" "b1") NIL NIL NIL))\r\n'
        b"f OK FETCH completed\r\n"
    )


def test_fetch_envelope_keeps_8bit(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"f FETCH 1 ENVELOPE\r\n") == (
        b'* 1 FETCH (ENVELOPE (NIL "Gr\xc3\xbc\xc3\x9fe" (("Alice" NIL "alice" "example.meship")) '
        b'(("Alice" NIL "alice" "example.meship")) (("Alice" NIL "alice" "example.meship")) '
        b'NIL NIL NIL NIL "<1@example.meship>"))\r\n'
        b"f OK FETCH completed\r\n"
    )


def test_fetch_sets(client: Client, lab: ImapLab) -> None:
    for _ in range(4):
        lab.deliver()
    client.select()
    client.send(b"s STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")  # UIDs 1 3 4
    assert (
        client.send(b"f UID FETCH 5:* (FLAGS)\r\n")
        == b"* 3 FETCH (FLAGS () UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"f UID FETCH 2,4:3 UID\r\n") == (
        b"* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 3:2,1 UID\r\n") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 4 (FLAGS)\r\n") == b"f OK FETCH completed\r\n"
    assert client.send(b"f FETCH x (FLAGS)\r\n") == b"f BAD sequence set expected\r\n"


def test_fetch_in_empty_mailbox(client: Client) -> None:
    client.select()
    assert client.send(b"f FETCH 1:* FLAGS\r\nu UID FETCH 1:* FLAGS\r\n") == (
        b"f OK FETCH completed\r\nu OK FETCH completed\r\n"
    )


# STORE


def test_store_flags_all_modes(client: Client, lab: ImapLab) -> None:
    lab.deliver(), lab.deliver()
    client.select()
    assert client.send(b"s STORE 1:2 +FLAGS (\\Seen \\flagged)\r\n") == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
        b"* 2 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
        b"s OK STORE completed\r\n"
    )
    assert client.send(b"s UID STORE 2 -FLAGS (\\Flagged)\r\n") == (
        b"* 2 FETCH (FLAGS (\\Seen) UID 2)\r\ns OK STORE completed\r\n"
    )
    assert client.send(b"s STORE 1 FLAGS.SILENT ($Done)\r\n") == b"s OK STORE completed\r\n"
    assert client.send(b"s UID STORE 2 +FLAGS.SILENT (\\Seen)\r\n") == b"s OK STORE completed\r\n"
    assert client.send(b"s STORE 1 -FLAGS.SILENT ($Done \\Recent)\r\n") == b"s OK STORE completed\r\n"
    assert client.send(b"s STORE 2 FLAGS (\\Answered \\Draft $Label)\r\n") == (
        b"* 2 FETCH (FLAGS ($Label \\Answered \\Draft))\r\ns OK STORE completed\r\n"
    )
    assert client.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ($Label \\Answered \\Draft))\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"s STORE 1 XFLAGS (\\Seen)\r\n") == (b"s BAD FLAGS, +FLAGS or -FLAGS expected\r\n")


# EXPUNGE, UID EXPUNGE


def test_expunge_sequence_numbers(client: Client, lab: ImapLab) -> None:
    for _ in range(5):
        lab.deliver()
    client.select()
    client.send(b"s STORE 2,3,5 +FLAGS.SILENT (\\Deleted)\r\n")
    assert (
        client.send(b"e EXPUNGE\r\n")
        == b"* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    )
    assert (
        client.send(b"f FETCH 1:* (UID)\r\n")
        == b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"s SELECT INBOX\r\n").startswith(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 2 EXISTS"
    )
    assert lab.deliver() == 6  # UIDs are never reused


def test_uid_expunge_only_the_given_messages(client: Client, lab: ImapLab) -> None:
    for _ in range(4):
        lab.deliver(flags=["\\Deleted"])
    client.select()
    assert (
        client.send(b"e UID EXPUNGE 2:3,9\r\n") == b"* 2 EXPUNGE\r\n* 2 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    )
    assert (
        client.send(b"f FETCH 1:* UID\r\n")
        == b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"e UID EXPUNGE 1 2\r\n") == b"e BAD unexpected text after the arguments\r\n"
    assert client.send(b"e UID NOOP\r\n") == b"e BAD UID NOOP is not a command\r\n"


# COPY, MOVE


def test_copy_answers_copyuid(client: Client, lab: ImapLab) -> None:
    for flags in (["\\Seen"], [], ["$Chat"]):
        lab.deliver(flags=flags)
    client.select()
    assert client.send(b"c COPY 1,3 Trash\r\n") == b"c OK [COPYUID 1700000000 1,3 1:2] COPY completed\r\n"
    assert client.send(b"c UID COPY 1:2 Trash\r\n") == b"c OK [COPYUID 1700000000 1:2 3:4] COPY completed\r\n"
    assert client.send(b"c UID COPY 7 Trash\r\n") == b"c OK COPY completed\r\n"  # nothing to copy
    assert client.send(b"c UID COPY 1 Nope\r\n") == b"c NO [TRYCREATE] there is no mailbox 'Nope'\r\n"
    assert client.send(b"t STATUS Trash (MESSAGES UNSEEN UIDNEXT)\r\n").startswith(
        b'* STATUS "Trash" (MESSAGES 4 UNSEEN 2 UIDNEXT 5)'
    )
    client.send(b"s SELECT Trash\r\n")
    assert (
        client.send(b"f FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n").count(
            b"Gr\xc3\xbc\xc3\x9fe"
        )
        == 4
    )
    assert (
        client.send("s SEARCH SUBJECT grüße KEYWORD $Chat\r\n".encode())
        == b"* SEARCH 2\r\ns OK SEARCH completed\r\n"
    )


def test_copy_to_the_selected_mailbox_reports_exists(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"c COPY 1 INBOX\r\n") == (
        b"* 2 EXISTS\r\n* 1 RECENT\r\nc OK [COPYUID 1700000000 1 2] COPY completed\r\n"
    )


def test_move_answers_copyuid_then_expunges(client: Client, lab: ImapLab) -> None:
    for _ in range(4):
        lab.deliver()
    other = lab.client()
    other.select()
    client.select()
    assert client.send(b"m MOVE 2:3 Trash\r\n") == (
        b"* OK [COPYUID 1700000000 2:3 1:2] Moved\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\nm OK MOVE completed\r\n"
    )
    assert client.send(b"m UID MOVE 4 Trash\r\n") == (
        b"* OK [COPYUID 1700000000 4 3] Moved\r\n* 2 EXPUNGE\r\nm OK MOVE completed\r\n"
    )
    assert client.send(b"m UID MOVE 1 Nope\r\n") == b"m NO [TRYCREATE] there is no mailbox 'Nope'\r\n"
    assert (
        other.send(b"n NOOP\r\n") == b"* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\nn OK NOOP completed\r\n"
    )
    assert other.send(b"s SELECT Trash\r\n").startswith(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 3 EXISTS"
    )
    assert other.send(b"f FETCH 1:* BODY.PEEK[]\r\n").count(literal(MESSAGE)) == 3


@given(
    lines=st.lists(
        st.sampled_from(
            [
                b"From: a\r\n",
                b"from : b\n",
                b"To: c\r\n",
                b"\tcontinued\r\n",
                b" more\n",
                b"Subject:x\r\n",
                b"X-From: no\r\n",
                b"FromX: no\r\n",
                b"Cc:\r\n",
                b"no colon\r\n",
                b"DATE: d",
            ]
        ),
        max_size=12,
    ),
    names=st.lists(
        st.sampled_from([b"FROM", b"TO", b'"Subject"', b"CC", b"DATE", b"X.Y"]), min_size=1, max_size=4
    ),
)
def test_header_fields_by_pattern_cut_what_the_field_parser_cuts(
    lines: list[bytes], names: list[bytes]
) -> None:
    """HEADER.FIELDS takes a regular expression; it must cut exactly what header_fields does."""
    header = b"".join(lines) + b"\r\n"
    wanted = {name.strip(b'"').lower() for name in names}
    expected = b"".join(raw for name, raw in header_fields(header) if name in wanted) + b"\r\n"
    assert select_fields(header, tuple(names), negate=False) == expected


def test_fetch_from_rows_answers_like_fetch_from_messages(
    client: Client, lab: ImapLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flags, sizes, dates and header sections come from rows (summary_responses); the answer
    is byte for byte what the general path, which parses each message, gives."""
    lab.deliver(flags=["\\Seen", "$Chat"])
    lab.deliver(b"Subject: folded\r\n  line\r\nFrom: b@y.meship\r\nX-Other: 1\r\n\r\nbody\r\n")
    lab.deliver(b"no header at all")
    client.select(recent=True)
    fetch = (
        b"f UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] BODY.PEEK[HEADER] "
        b'BODY.PEEK[HEADER.FIELDS.NOT ("From")] RFC822.SIZE INTERNALDATE)\r\n'
    )
    from_rows = client.send(fetch)
    assert from_rows.count(b"\\Recent") == 3 and from_rows.count(b"FETCH (") == 3
    with monkeypatch.context() as patch:
        patch.setattr(selected_commands, "summary_query", lambda query: False)
        assert client.send(fetch) == from_rows
    other = lab.client()
    other.select()
    other.send(b"s STORE 1 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")  # client has not been told yet
    assert client.send(b"f FETCH 1:* (UID)\r\n") == (
        b"* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nf OK FETCH completed\r\n"
    )
