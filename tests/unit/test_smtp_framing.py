"""Bounded command lines and the DATA stream decoder, on byte chunks."""

from __future__ import annotations

from ygbridge.smtp.framing import DataDecoder, LineBuffer, Overflow


def _lines(buffer: LineBuffer) -> list[bytes | Overflow]:
    out: list[bytes | Overflow] = []
    while (line := buffer.line()) is not None:
        out.append(line)
    return out


def test_lines_end_in_crlf_or_lf_and_wait_for_their_end() -> None:
    buffer = LineBuffer(16)
    buffer.add(b"NOOP\r\nRSET\nQU")
    assert _lines(buffer) == [b"NOOP", b"RSET"]
    buffer.add(b"IT\r\n")
    assert _lines(buffer) == [b"QUIT"]


def test_an_overlong_line_is_dropped_to_its_end_while_it_arrives() -> None:
    buffer = LineBuffer(16)
    buffer.add(b"x" * 20)
    assert _lines(buffer) == [Overflow.START] and len(buffer) == 0
    for _ in range(3):
        buffer.add(b"y" * 10)
        _lines(buffer)
        assert len(buffer) == 0  # nothing of it is kept
    buffer.add(b"zz\r\nNOOP\r\n")
    assert _lines(buffer) == [b"NOOP"]


def test_an_endless_line_overflows_again_for_each_limit() -> None:
    buffer = LineBuffer(100)
    seen = []
    for _ in range(50):
        buffer.add(b"a" * 10)
        seen += _lines(buffer)
    assert seen == [Overflow.START] + [Overflow.MORE] * 4  # 500 octets: five limits' worth


def test_a_line_of_exactly_the_limit_is_accepted() -> None:
    buffer = LineBuffer(8)
    buffer.add(b"123456\r\n1234567\r\n")
    assert _lines(buffer) == [b"123456", Overflow.START]


def test_take_a_chunk() -> None:
    buffer = LineBuffer(16)
    buffer.add(b"0123456789")
    assert (buffer.take(4), buffer.take(100), buffer.take()) == (b"0123", b"456789", b"")


def _decode(wire: bytes, size: int) -> tuple[bytes, bytes | None]:
    decoder, out, rest = DataDecoder(), b"", None
    for start in range(0, len(wire), size):
        data, rest = decoder.feed(wire[start : start + size])
        out += data
        if rest is not None:
            rest += wire[start + size :]
            break
    return out, rest


def test_dot_stuffing_and_the_end_across_every_chunk_boundary() -> None:
    wire = b".a\r\n..\r\n...b\r\nc.\r\n\r\n.\r\nQUIT\r\n"
    for size in range(1, len(wire) + 1):
        assert _decode(wire, size) == (b"a\r\n.\r\n..b\r\nc.\r\n\r\n", b"QUIT\r\n"), size


def test_an_empty_message_and_one_without_an_end() -> None:
    assert _decode(b".\r\n", 1) == (b"", b"")
    out, rest = _decode(b"abc\r\n.\r", 3)
    assert (out, rest) == (b"abc", None)  # "\r\n.\r" is held back: it may be the end


def test_bare_line_ends_never_end_data() -> None:
    wire = b"a\n.\nb\r.\rc\n.\r\nd\r\n.\ne\r\n"
    assert _decode(wire, 4) == (b"a\n.\nb\r.\rc\n.\r\nd\r\n\ne", None)  # CRLF held back
