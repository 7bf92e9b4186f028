"""IMAP's command grammar (RFC 3501 section 9, RFC 7888 LITERAL+) over the bytes of one command.

A command is parsed once it is whole: its lines and, after each ``{n}`` or ``{n+}`` that ends a
line, the n octets of that literal (imap.protocol frames them). :class:`Parser` reads it left to
right; each production raises BadCommand (answered ``BAD``) on input that does not match, and
every number is read with a bound, so no input makes it raise anything else. The same
productions serve every command: there is one astring, one string and one mailbox parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec, RFC 3501 5.1.3)

from ygbridge.errors import BadCommand
from ygbridge.imap.dates import parse_date_time

T = TypeVar("T")

#: Largest number IMAP has (RFC 3501 section 9: number, nz-number).
MAX_NUMBER = 4294967295
_MAX_DIGITS = len(str(MAX_NUMBER))

#: A tag: ASTRING-CHARs but "+" (8-bit tolerated, as by most servers).
_TAG = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\+]+")
#: ATOM-CHAR: no atom-specials (with resp-special "]", and 8-bit tolerated).
_ATOM = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\]]+")
#: The unquoted form of an astring, leniently: anything up to a space, parenthesis or quote.
_ASTRING_ATOM = re.compile(rb"[^\x00-\x20\x7f(){\"]+")
#: list-mailbox's unquoted form: ATOM-CHARs, list-wildcards and "]".
_LIST_CHARS = re.compile(rb"[^\x00-\x20\x7f(){\"\\]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n")
_FLAG = re.compile(rb"\\?[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
_DIGITS = re.compile(rb"\d+")
_SEQUENCE = re.compile(rb"[0-9:*,]+")
_SEQ_NUMBER = re.compile(rb"\*|[1-9]\d{0,9}")
_NEEDS_LITERAL = re.compile(rb"[\x00\r\n\x80-\xff]")
#: Names that are their own modified UTF-7 form (printable ASCII but "&"): no codec needed.
_ITSELF_IN_UTF7 = re.compile(rb"[\x20-\x25\x27-\x7e]*")
_ITSELF_IN_UTF7_TEXT = re.compile(r"[\x20-\x25\x27-\x7e]*")


def number(digits: bytes, what: str, nonzero: bool = False) -> int:
    """A number of at most 10 digits and at most MAX_NUMBER; BadCommand otherwise."""
    if not digits.isdigit() or not digits.isascii():
        raise BadCommand(f"{what}: a number is wanted")
    if len(digits) > _MAX_DIGITS or int(digits) > MAX_NUMBER:
        raise BadCommand(f"{what}: number out of range (at most {MAX_NUMBER})")
    value = int(digits)
    if nonzero and value == 0:
        raise BadCommand(f"{what}: must not be 0")
    return value


@dataclass(frozen=True)
class SequenceSet:
    """A sequence set or UID set as ranges: ``(low, high)`` inclusive, None for ``*``, unsorted."""

    ranges: tuple[tuple[int | None, int | None], ...]


def parse_sequence_set(text: bytes, max_ranges: int) -> SequenceSet:
    """A sequence set (``1:3,7,9:*``) in one pass; at most ``max_ranges`` ranges."""
    if text.count(b",") >= max_ranges:
        raise BadCommand(f"sequence set with more than {max_ranges} ranges")
    ranges = []
    for item in text.split(b","):
        ends = item.split(b":")
        if len(ends) > 2 or not all(_SEQ_NUMBER.fullmatch(end) for end in ends):
            raise BadCommand("malformed sequence set")
        values = [None if end == b"*" else number(end, "sequence set", nonzero=True) for end in ends]
        ranges.append((values[0], values[-1]))
    return SequenceSet(tuple(ranges))


def quoted(data: bytes) -> bytes:
    """``data`` as an IMAP string: quoted with escapes, or a literal if it cannot be quoted."""
    if _NEEDS_LITERAL.search(data):
        return b"{%d}\r\n%b" % (len(data), data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_mailbox(name: str) -> bytes:
    """A mailbox name for a response: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    if _ITSELF_IN_UTF7_TEXT.fullmatch(name):
        return quoted(name.encode("ascii"))
    return quoted(name.encode("imap4-utf-7"))


def decode_mailbox(name: bytes) -> str:
    """A mailbox name from the wire (modified UTF-7); BadCommand if not validly encoded."""
    if _ITSELF_IN_UTF7.fullmatch(name):
        return name.decode("ascii")
    try:
        decoded = name.decode("imap4-utf-7")
    except (UnicodeError, ValueError):
        raise BadCommand("mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)") from None
    if decoded.encode("imap4-utf-7") != name:  # the codec is lenient: only the canonical form counts
        raise BadCommand("mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)")
    return decoded


class Parser:
    """Reads one command's arguments; ``pos`` is how far it has read."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    # Structure

    def at_end(self) -> bool:
        """Whether every argument byte has been read."""
        return self.pos >= len(self.data)

    def end(self) -> None:
        """The command must end here."""
        if not self.at_end():
            raise BadCommand("unexpected text after the arguments")

    def peek(self, text: bytes) -> bool:
        """Whether ``text`` comes next (case-insensitive), without reading it."""
        return self.data[self.pos : self.pos + len(text)].upper() == text.upper()

    def skip(self, text: bytes) -> bool:
        """Read ``text`` if it comes next (case-insensitive)."""
        if self.peek(text):
            self.pos += len(text)
            return True
        return False

    def expect(self, text: bytes, what: str) -> None:
        """Read ``text`` here; BadCommand naming ``what`` otherwise."""
        if not self.skip(text):
            raise BadCommand(f"{what} expected")

    def sp(self) -> None:
        """Read the single space between arguments."""
        self.expect(b" ", "space")

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        match = pattern.match(self.data, self.pos)
        if match is None:
            raise BadCommand(f"{what} expected")
        self.pos = match.end()
        return match[0]

    def parenthesised(self, item: Callable[[], T], what: str, empty: bool = True) -> list[T]:
        """``"(" item *(SP item) ")"``; ``empty`` allows ``()``."""
        self.expect(b"(", f"( before {what}")
        items: list[T] = []
        if not (empty and self.skip(b")")):
            items.append(item())
            while not self.skip(b")"):
                self.sp()
                items.append(item())
        return items

    # Atoms, numbers, strings

    def tag(self) -> bytes:
        """Read a command tag."""
        return self._match(_TAG, "tag")

    def atom(self, what: str = "atom") -> bytes:
        """Read an atom (``what`` names it in the error)."""
        return self._match(_ATOM, what)

    def number(self, what: str = "number", nonzero: bool = False) -> int:
        """Read a number (non-zero if ``nonzero``)."""
        return number(self._match(_DIGITS, what), what, nonzero)

    def quoted(self) -> bytes:
        """Read a quoted string; its content with the escapes removed."""
        match = _QUOTED.match(self.data, self.pos)
        if match is None:
            raise BadCommand('unterminated quoted string, or \\ before other than " or \\')
        self.pos = match.end()
        return _QUOTED_ESCAPE.sub(rb"\1", match[1])

    def literal(self) -> bytes:
        """Read a literal (``{n}`` CRLF and n bytes, already in the buffer); its bytes."""
        match = _LITERAL.match(self.data, self.pos)
        if match is None:
            raise BadCommand("malformed literal")
        size = number(match[1], "literal length")
        start = match.end()
        if start + size > len(self.data):
            raise BadCommand("literal shorter than announced")
        self.pos = start + size
        return self.data[start : self.pos]

    def string(self, what: str = "string") -> bytes:
        """A quoted string or a literal."""
        if self.peek(b'"'):
            return self.quoted()
        if self.peek(b"{"):
            return self.literal()
        raise BadCommand(f"{what} expected")

    def astring(self, what: str = "string") -> bytes:
        """An atom, a quoted string or a literal."""
        if self.peek(b'"') or self.peek(b"{"):
            return self.string(what)
        return self._match(_ASTRING_ATOM, what)

    def nstring(self, what: str = "string") -> bytes | None:
        """Read NIL (None) or a string."""
        if self.peek(b"NIL") and not _ASTRING_ATOM.match(self.data, self.pos + 3):
            self.pos += 3
            return None
        return self.string(what)

    # IMAP values

    def mailbox(self) -> str:
        """A mailbox name (astring in modified UTF-7)."""
        return decode_mailbox(self.astring("mailbox name"))

    def list_mailbox(self) -> str:
        """LIST's mailbox pattern: list-chars (with ``*`` and ``%``) or a string."""
        if self.peek(b'"') or self.peek(b"{"):
            return decode_mailbox(self.string("mailbox pattern"))
        return decode_mailbox(self._match(_LIST_CHARS, "mailbox pattern"))

    def flag(self) -> str:
        """Read one flag (``\\Seen``, a keyword)."""
        return self._match(_FLAG, "flag (an ASCII atom)").decode("ascii")

    def flag_list(self) -> list[str]:
        """Read a parenthesised list of flags."""
        return self.parenthesised(self.flag, "flags")

    def flags(self) -> list[str]:
        """STORE's flags: a flag list, or flags without parentheses."""
        if self.peek(b"("):
            return self.flag_list()
        flags = [self.flag()]
        while self.skip(b" "):
            flags.append(self.flag())
        return flags

    def date_time(self) -> float:
        """A quoted date-time (APPEND), as POSIX time."""
        if not self.peek(b'"'):
            raise BadCommand("date-time expected")
        text = self.quoted()
        try:
            return parse_date_time(text)
        except (ValueError, OverflowError):
            raise BadCommand('malformed date-time, e.g. "05-Mar-2024 10:30:00 +0100"') from None

    def sequence_set(self, max_ranges: int) -> SequenceSet:
        """Read a sequence set of at most ``max_ranges`` ranges."""
        return parse_sequence_set(self._match(_SEQUENCE, "sequence set"), max_ranges)


def command_tag(data: bytes) -> bytes:
    """The tag a command starts with, or ``*`` if it has none to answer under."""
    match = _TAG.match(data)
    return match[0] if match is not None and data[match.end() : match.end() + 1] == b" " else b"*"


def appends_message(prefix: bytes) -> bool:
    """Whether a literal after ``prefix`` (a command up to a ``{``) is APPEND's message.

    Any other literal (every one not after APPEND's mailbox name) holds a string.
    """
    reader = Parser(prefix)
    try:
        reader.tag()
        reader.sp()
        if reader.atom().upper() != b"APPEND":
            return False
        reader.sp()
        if reader.at_end():
            return False  # the literal is the mailbox name
        reader.astring()
    except BadCommand:
        return False
    return True
