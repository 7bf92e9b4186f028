"""IMAP SEARCH keys (RFC 3501 6.4.4) compiled into a predicate over a session's messages.

Twisted's own SEARCH fails on Python 3 for most text and date keys; this replaces it.
Text keys match raw bytes case-insensitively (no MIME decoding).
"""

from __future__ import annotations

import email.utils
import re
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from twisted.mail.imap4 import IllegalClientResponse, IllegalIdentifierError, parseIdList

from ygbridge.imap.message import ImapMessage, MimeEntity, header_fields

Predicate = Callable[[int, ImapMessage], bool]

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
_CONSTANT = {b"ALL": True, b"OLD": True, b"NEW": False, b"RECENT": False}  # nothing is \Recent
_ADDRESS_KEYS = {b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT"}
#: Keys that need the message bytes.
BODY_KEYS = _ADDRESS_KEYS | {b"HEADER", b"BODY", b"TEXT", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}
_DATE = re.compile(rb'"?(\d{1,2})-([A-Za-z]{3})-(\d{4})"?')
_MONTHS = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"]


def _date(token: bytes) -> date:
    match = _DATE.fullmatch(token)
    if match is None or match[2].lower() not in _MONTHS:
        raise IllegalClientResponse(f"bad SEARCH date {token!r}")
    return date(int(match[3]), _MONTHS.index(match[2].lower()) + 1, int(match[1]))


def _arrived(message: ImapMessage) -> date:
    return datetime.fromtimestamp(message.stored.internaldate, UTC).date()


def _sent(message: ImapMessage) -> date | None:
    try:
        return email.utils.parsedate_to_datetime(message.getHeaders(False, "date")["date"]).date()
    except (KeyError, TypeError, ValueError):
        return None


def _contains(haystack: bytes, needle: bytes) -> bool:
    return needle.lower() in haystack.lower()


def _header(entity: MimeEntity, name: bytes) -> bytes:
    """The raw values of every field called ``name``."""
    fields = header_fields(entity.header)
    return b"\n".join(raw.split(b":", 1)[-1] for field, raw in fields if field == name.lower())


def _compare(key: bytes, when: Callable[[ImapMessage], date | None], day: date) -> Predicate:
    def test(seq: int, message: ImapMessage) -> bool:
        value = when(message)
        if value is None:
            return False
        return (
            value < day if key.endswith(b"BEFORE") else value == day if key.endswith(b"ON") else value >= day
        )

    return test


class _Parser:
    def __init__(self, tokens: list[Any], count: int, last_uid: int) -> None:
        self._tokens = deque(tokens)
        self._count = count
        self._last_uid = last_uid
        self.needs_body = False

    def _argument(self, key: bytes) -> bytes:
        if not self._tokens or not isinstance(self._tokens[0], bytes):
            raise IllegalClientResponse(f"SEARCH {key.decode('ascii', 'replace')} wants an argument")
        return self._tokens.popleft()

    def _set(self, token: bytes, last: int) -> Any:
        try:
            ids = parseIdList(token)
        except IllegalIdentifierError:
            raise IllegalClientResponse(f"bad SEARCH key {token!r}") from None
        ids.last = last
        return ids

    def all(self) -> list[Predicate]:
        keys = []
        while self._tokens:
            keys.append(self.key())
        return keys

    def key(self) -> Predicate:
        token = self._tokens.popleft()
        if isinstance(token, list):
            outer, self._tokens = self._tokens, deque(token)
            keys = self.all()
            self._tokens = outer
            return lambda seq, message: all(key(seq, message) for key in keys)
        key = token.upper()
        self.needs_body |= key in BODY_KEYS
        if key in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[key]
            return lambda seq, message: (flag in message.getFlags()) == present
        if key in _CONSTANT:
            value = _CONSTANT[key]
            return lambda seq, message: value
        if key in (b"KEYWORD", b"UNKEYWORD"):
            keyword, present = self._argument(key).decode("ascii", "replace"), key == b"KEYWORD"
            return lambda seq, message: (keyword in message.getFlags()) == present
        if key == b"NOT":
            negated = self.key()
            return lambda seq, message: not negated(seq, message)
        if key == b"OR":
            first, second = self.key(), self.key()
            return lambda seq, message: first(seq, message) or second(seq, message)
        if key == b"UID":
            uids = self._set(self._argument(key), self._last_uid)
            return lambda seq, message: message.getUID() in uids
        if key in (b"LARGER", b"SMALLER"):
            size, larger = int(self._argument(key)), key == b"LARGER"
            return lambda seq, message: message.getSize() > size if larger else message.getSize() < size
        if key in (b"BEFORE", b"ON", b"SINCE"):
            return _compare(key, _arrived, _date(self._argument(key)))
        if key in (b"SENTBEFORE", b"SENTON", b"SENTSINCE"):
            return _compare(key, _sent, _date(self._argument(key)))
        if key in _ADDRESS_KEYS:
            needle = self._argument(key)
            return lambda seq, message: _contains(_header(message.entity, key), needle)
        if key == b"HEADER":
            name, needle = self._argument(key), self._argument(key)
            return lambda seq, message: _contains(_header(message.entity, name), needle)
        if key in (b"BODY", b"TEXT"):
            needle, text = self._argument(key), key == b"TEXT"
            return lambda seq, message: _contains(message.entity.raw if text else message.entity.body, needle)
        seqs = self._set(token, self._count)
        return lambda seq, message: seq in seqs


def compile_search(query: list[Any], count: int, last_uid: int) -> tuple[Predicate, bool]:
    """A predicate for parsed SEARCH keys, and whether it needs the message bytes.

    ``count`` and ``last_uid`` give ``*`` its meaning. IllegalClientResponse for bad keys.
    """
    parser = _Parser(query, count, last_uid)
    keys = parser.all()
    return (lambda seq, message: all(key(seq, message) for key in keys)), parser.needs_body
