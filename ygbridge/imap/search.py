"""IMAP SEARCH keys (RFC 3501 6.4.4) parsed into the store's search terms (store.search).

Keys are read straight from the command (imap.wire), at most ``limits.search_keys`` of them,
nested at most ``limits.search_nesting`` deep.
Sequence sets become UID ranges through the session's sequence numbers, so the store can
answer in SQL. Search strings are US-ASCII or UTF-8 (the charsets advertised in BADCHARSET).
"""

from __future__ import annotations

from datetime import date

from ygbridge.errors import BadCommand, MailboxError
from ygbridge.imap.dates import parse_date
from ygbridge.imap.sequence import SequenceMap
from ygbridge.imap.wire import Parser
from ygbridge.limits import Limits
from ygbridge.store.search import (
    EVERYTHING,
    And,
    Arrival,
    BodyContains,
    HasFlag,
    HeaderContains,
    Not,
    Or,
    Relation,
    Sent,
    Size,
    Term,
    UidRanges,
)

CHARSETS = (b"US-ASCII", b"UTF-8")

_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True),
    b"DELETED": ("\\Deleted", True),
    b"DRAFT": ("\\Draft", True),
    b"FLAGGED": ("\\Flagged", True),
    b"SEEN": ("\\Seen", True),
    b"UNANSWERED": ("\\Answered", False),
    b"UNDELETED": ("\\Deleted", False),
    b"UNDRAFT": ("\\Draft", False),
    b"UNFLAGGED": ("\\Flagged", False),
    b"UNSEEN": ("\\Seen", False),
}
#: Keys that match every message.
_CONSTANT: dict[bytes, Term] = {b"ALL": EVERYTHING}
_HEADER_KEYS = {b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT"}
_DATE_KEYS: dict[bytes, tuple[type[Arrival] | type[Sent], Relation]] = {
    b"BEFORE": (Arrival, "before"),
    b"ON": (Arrival, "on"),
    b"SINCE": (Arrival, "since"),
    b"SENTBEFORE": (Sent, "before"),
    b"SENTON": (Sent, "on"),
    b"SENTSINCE": (Sent, "since"),
}


class UnsupportedCharset(MailboxError):
    """SEARCH CHARSET names a charset other than those in CHARSETS."""

    def __init__(self) -> None:
        names = " ".join(charset.decode("ascii") for charset in CHARSETS)
        super().__init__(f"[BADCHARSET ({names})] unsupported charset")


def _flag(flag: str, present: bool) -> Term:
    return HasFlag(flag) if present else Not(HasFlag(flag))


class _Keys:
    def __init__(self, reader: Parser, seqs: SequenceMap, recent: Term, limits: Limits) -> None:
        self._reader = reader
        self._seqs = seqs
        self._recent = recent
        self._limits = limits
        self._keys = 0

    def _argument(self, key: bytes) -> bytes:
        if not self._reader.skip(b" "):
            raise BadCommand(f"SEARCH {key.decode('ascii')} wants an argument")
        return self._reader.astring(f"SEARCH {key.decode('ascii')} argument")

    def _text(self, key: bytes) -> str:
        return self._argument(key).decode("utf-8", "replace")

    def _set(self, uid: bool) -> UidRanges:
        ids = self._reader.sequence_set(self._limits.sequence_ranges)
        return UidRanges(self._seqs.uid_ranges(self._seqs.spans(ids, uid)))

    def keys(self, depth: int) -> And:
        """Keys separated by spaces, up to the end of the command or a closing parenthesis."""
        keys = [self.key(depth)]
        while self._reader.skip(b" "):
            keys.append(self.key(depth))
        return And(tuple(dict.fromkeys(keys)))  # the same key twice is the same condition

    def key(self, depth: int) -> Term:
        if depth > self._limits.search_nesting:
            raise BadCommand(f"SEARCH keys nested more than {self._limits.search_nesting} deep")
        self._keys += 1
        if self._keys > self._limits.search_keys:
            raise BadCommand(f"more than {self._limits.search_keys} SEARCH keys")
        reader = self._reader
        if reader.skip(b"("):
            keys = self.keys(depth + 1)
            reader.expect(b")", ") after SEARCH keys")
            return keys
        if reader.peek(b"*") or reader.data[reader.pos : reader.pos + 1].isdigit():
            return self._set(uid=False)
        key = reader.atom("SEARCH key").upper()
        if key in _FLAG_KEYS:
            return _flag(*_FLAG_KEYS[key])
        if key in _CONSTANT:
            return _CONSTANT[key]
        if key == b"RECENT":
            return self._recent
        if key == b"OLD":
            return Not(self._recent)
        if key == b"NEW":
            return And((self._recent, _flag("\\Seen", False)))
        if key in (b"KEYWORD", b"UNKEYWORD"):
            reader.sp()
            return _flag(reader.flag(), key == b"KEYWORD")
        if key == b"NOT":
            reader.sp()
            return Not(self.key(depth + 1))
        if key == b"OR":
            reader.sp()
            left = self.key(depth + 1)
            reader.sp()
            return Or(left, self.key(depth + 1))
        if key == b"UID":
            reader.sp()
            return self._set(uid=True)
        if key in (b"LARGER", b"SMALLER"):
            reader.sp()
            return Size(key == b"LARGER", reader.number("SEARCH size"))
        if key in _DATE_KEYS:
            kind, relation = _DATE_KEYS[key]
            try:
                day = parse_date(self._argument(key))
            except ValueError:
                raise BadCommand("bad SEARCH date, e.g. 5-Mar-2024") from None
            if day == date.max:
                raise BadCommand("SEARCH dates end before 31-Dec-9999")  # the store looks at the day after
            return kind(relation, day)
        if key in _HEADER_KEYS:
            return HeaderContains(key.decode("ascii").lower(), self._text(key))
        if key == b"HEADER":
            name = self._text(key).lower()
            return HeaderContains(name, self._text(key))
        if key in (b"BODY", b"TEXT"):
            return BodyContains(self._text(key), whole=key == b"TEXT")
        raise BadCommand(f"unknown SEARCH key {key.decode('ascii', 'replace')}")


def parse_search(reader: Parser, seqs: SequenceMap, recent: Term, limits: Limits) -> Term:
    """The store's term for SEARCH's arguments (``[CHARSET name SP] keys``); BadCommand if malformed.

    ``recent`` is the session's \\Recent messages (RECENT, NEW, OLD).
    UnsupportedCharset (a NO) for charsets other than US-ASCII and UTF-8.
    """
    if reader.skip(b"CHARSET "):
        if reader.astring("charset").upper() not in CHARSETS:
            raise UnsupportedCharset()
        reader.sp()
    term = _Keys(reader, seqs, recent, limits).keys(0)
    reader.end()
    return term
