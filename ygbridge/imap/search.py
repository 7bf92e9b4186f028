"""IMAP SEARCH keys (RFC 3501 6.4.4) parsed into the store's search terms (store.search).

Sequence sets become UID ranges through the session's sequence numbers, so the store can
answer in SQL. Search strings are US-ASCII or UTF-8 (the charsets advertised in BADCHARSET).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.mail.imap4 import IllegalClientResponse, IllegalIdentifierError, MessageSet, parseIdList

from ygbridge.errors import MailboxError
from ygbridge.imap.dates import parse_date
from ygbridge.imap.sequence import SequenceMap
from ygbridge.store.search import (
    EVERYTHING,
    NOTHING,
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
#: Keys that match every message or none (no message is ever \Recent).
_CONSTANT: dict[bytes, Term] = {b"ALL": EVERYTHING, b"OLD": EVERYTHING, b"NEW": NOTHING, b"RECENT": NOTHING}
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


class _Parser:
    def __init__(self, tokens: list[Any], seqs: SequenceMap) -> None:
        self._tokens = deque(tokens)
        self._seqs = seqs

    def _argument(self, key: bytes) -> bytes:
        if not self._tokens or not isinstance(self._tokens[0], bytes):
            raise IllegalClientResponse(f"SEARCH {key.decode('ascii', 'replace')} wants an argument")
        return self._tokens.popleft()

    def _text(self, key: bytes) -> str:
        return self._argument(key).decode("utf-8", "replace")

    def _set(self, token: bytes, uid: bool) -> UidRanges:
        try:
            ids: MessageSet = parseIdList(token)
        except IllegalIdentifierError:
            raise IllegalClientResponse(f"bad SEARCH key {token!r}") from None
        return UidRanges(self._seqs.uid_ranges(self._seqs.spans(ids, uid)))

    def all(self) -> And:
        keys = []
        while self._tokens:
            keys.append(self.key())
        return And(tuple(keys))

    def key(self) -> Term:
        token = self._tokens.popleft()
        if isinstance(token, list):
            outer, self._tokens = self._tokens, deque(token)
            keys = self.all()
            self._tokens = outer
            return keys
        key = token.upper()
        if key in _FLAG_KEYS:
            return _flag(*_FLAG_KEYS[key])
        if key in _CONSTANT:
            return _CONSTANT[key]
        if key in (b"KEYWORD", b"UNKEYWORD"):
            return _flag(self._text(key), key == b"KEYWORD")
        if key == b"NOT":
            return Not(self.key())
        if key == b"OR":
            return Or(self.key(), self.key())
        if key == b"UID":
            return self._set(self._argument(key), uid=True)
        if key in (b"LARGER", b"SMALLER"):
            size = self._argument(key)
            if not size.isdigit():
                raise IllegalClientResponse(f"bad SEARCH size {size!r}")
            return Size(key == b"LARGER", int(size))
        if key in _DATE_KEYS:
            kind, relation = _DATE_KEYS[key]
            try:
                return kind(relation, parse_date(self._argument(key)))
            except ValueError as exc:
                raise IllegalClientResponse(f"bad SEARCH date: {exc}") from None
        if key in _HEADER_KEYS:
            return HeaderContains(key.decode("ascii").lower(), self._text(key))
        if key == b"HEADER":
            name = self._text(key).lower()
            return HeaderContains(name, self._text(key))
        if key in (b"BODY", b"TEXT"):
            return BodyContains(self._text(key), whole=key == b"TEXT")
        return self._set(token, uid=False)


def parse_search(tokens: list[Any], charset: bytes | None, seqs: SequenceMap) -> Term:
    """The store's term for parsed SEARCH keys; IllegalClientResponse if malformed.

    UnsupportedCharset (a NO) for charsets other than US-ASCII and UTF-8.
    """
    if charset is not None and charset.upper() not in CHARSETS:
        raise UnsupportedCharset()
    if not tokens:
        raise IllegalClientResponse("SEARCH wants at least one key")
    return _Parser(tokens, seqs).all()
