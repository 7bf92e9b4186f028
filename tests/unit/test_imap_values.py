"""The pure parts of the IMAP server: sequence numbers, UID sets, dates, MIME parts."""

from __future__ import annotations

from array import array
from datetime import date

import pytest

from ygbridge.imap.dates import format_date_time, parse_date, parse_date_time
from ygbridge.imap.message import MimeEntity
from ygbridge.imap.sequence import SequenceMap, uid_set
from ygbridge.imap.wire import parse_sequence_set
from ygbridge.message import header_value, split_message


def spans(seqs: SequenceMap, text: bytes, uid: bool) -> list[range]:
    return seqs.spans(parse_sequence_set(text, 100), uid)


def test_sequence_sets_name_positions() -> None:
    seqs = SequenceMap(array("Q", [3, 5, 9, 10, 20]))
    assert spans(seqs, b"1:*", uid=False) == [range(0, 5)]
    assert spans(seqs, b"4:2,1,9", uid=False) == [range(0, 4)]
    assert spans(seqs, b"*:4", uid=False) == [range(3, 5)]
    assert spans(seqs, b"6:7", uid=False) == []
    assert spans(seqs, b"5:9", uid=True) == [range(1, 3)]
    assert spans(seqs, b"4,11:19", uid=True) == []
    assert spans(seqs, b"30:*", uid=True) == [range(4, 5)]  # * is 20: 20:30
    assert spans(seqs, b"1:5,9:10", uid=True) == [range(0, 4)]  # adjacent spans merge
    assert seqs.uid_ranges(spans(seqs, b"1,3:4", uid=False)) == ((3, 3), (9, 10))
    assert [list(batch) for batch in seqs.batches([range(0, 3), range(4, 5)], 2)] == [[3, 5], [9], [20]]
    assert SequenceMap(array("Q")).spans(parse_sequence_set(b"1:*", 1), uid=False) == []


def test_sequence_numbers_follow_expunges_and_additions() -> None:
    seqs = SequenceMap(array("Q", [3, 5, 9, 10, 20]))
    assert (seqs.seq(9), seqs.seq(4), seqs.uid(2), seqs.last_uid) == (3, None, 5, 20)
    assert seqs.remove({5, 10, 20, 99}) == [2, 3, 3]
    assert (len(seqs), seqs.seq(9)) == (2, 2)
    seqs.add([25, 21, 9])
    assert [seqs.uid(n) for n in range(1, 5)] == [3, 9, 21, 25]


def test_uid_set() -> None:
    assert uid_set([1, 2, 3, 5, 7, 8]) == b"1:3,5,7:8"
    assert uid_set([4]) == b"4"
    assert uid_set([]) == b""


def test_dates() -> None:
    assert parse_date(b"7-Jul-2024") == parse_date(b'"07-jul-2024"') == date(2024, 7, 7)
    assert parse_date_time(b" 1-Jan-2024 01:00:00 +0100") == 1704067200
    assert parse_date_time(b"31-Dec-2023 16:00:00 -0800") == 1704067200
    assert format_date_time(1704067200) == b'"01-Jan-2024 00:00:00 +0000"'
    for bad in (b"1-Foo-2024 01:00:00 +0100", b"2024-01-01 01:00:00"):
        with pytest.raises(ValueError):
            parse_date_time(bad)
    with pytest.raises(ValueError):
        parse_date(b"32-Jan-2024")


def test_split_message_and_parts() -> None:
    assert split_message(b"A: b\n\nbody") == (b"A: b\n\n", b"body")
    assert split_message(b"\r\nbody") == (b"\r\n", b"body")
    assert split_message(b"A: b\r\n") == (b"A: b\r\n", b"")
    entity = MimeEntity(
        b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x\r\n\r\ntwo"
    )
    assert [part.body for part in entity.children] == [b"one", b"two"]  # no close delimiter
    assert entity.getHeaders(False, "CONTENT-TYPE") == {"content-type": "multipart/alternative; boundary=x"}


def test_header_value_unfolds() -> None:
    message = b"Subject: a\r\n b\r\nMessage-ID:  <x@y>\r\nX: \r\n\r\nSubject: body"
    assert header_value(message, "subject") == "a b"
    assert header_value(message, "Message-ID") == "<x@y>"
    assert header_value(message, "x") is None and header_value(message, "nope") is None
