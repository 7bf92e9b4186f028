"""Search criteria the store understands, and the SQL that finds them (RFC 3501 6.4.4 semantics).

A protocol's parser builds a tree of these terms; :func:`matching_text` turns it into one SQL
query over the indexed columns (store.indexing), so no message is read into Python to match.
Header text is compared case-folded; body text byte-wise, case-insensitively for ASCII.
"""

from __future__ import annotations

import operator
from array import array
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import peewee

from ygbridge.store.flags import SYSTEM_FLAGS, flag_bit
from ygbridge.store.indexing import searchable
from ygbridge.store.messages import rows
from ygbridge.store.models import HeaderField, Message, database

Relation = Literal["before", "on", "since"]


@dataclass(frozen=True)
class HasFlag:
    """Messages with this system flag or keyword (keywords compare case-insensitively)."""

    flag: str


@dataclass(frozen=True)
class UidRanges:
    """Messages whose UID lies in one of these inclusive (low, high) ranges."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Size:
    """Messages larger (or smaller) than ``octets``."""

    larger: bool
    octets: int


@dataclass(frozen=True)
class Arrival:
    """Messages that arrived before, on or since a day (UTC, as INTERNALDATE is shown)."""

    relation: Relation
    day: date


@dataclass(frozen=True)
class Sent:
    """Messages whose Date field names a day before, on or since ``day``; none without a Date."""

    relation: Relation
    day: date


@dataclass(frozen=True)
class HeaderContains:
    """Messages with a header field ``name`` (lowercase) containing ``text``; "" means any value."""

    name: str
    text: str


@dataclass(frozen=True)
class BodyContains:
    """Messages whose body (with the header too if ``whole``) contains ``text``."""

    text: str
    whole: bool


@dataclass(frozen=True)
class Not:
    """Messages the term does not match."""

    term: Term


@dataclass(frozen=True)
class Or:
    """Messages either term matches."""

    left: Term
    right: Term


@dataclass(frozen=True)
class And:
    """Messages every term matches (with no terms: every message)."""

    terms: tuple[Term, ...] = ()


Term = HasFlag | UidRanges | Size | Arrival | Sent | HeaderContains | BodyContains | Not | Or | And
EVERYTHING = And()
NOTHING = Not(EVERYTHING)

_TRUE = peewee.SQL("TRUE")
_FALSE = peewee.SQL("FALSE")
_ONE_DAY = timedelta(days=1)


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _relation(column: Any, relation: Relation, day: Any, next_day: Any) -> Any:
    if relation == "before":
        return column < day
    if relation == "on":
        return (column >= day) & (column < next_day)
    return column >= day


def _contains(column: Any, text: str) -> Any:
    """``column LIKE %text% ESCAPE ...`` with the wildcards in ``text`` escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return peewee.NodeList((column, peewee.SQL("LIKE"), f"%{escaped}%", peewee.SQL("ESCAPE '\\'")))


def _balanced(combine: Any, conditions: list[Any], empty: Any) -> Any:
    """``conditions`` joined by ``combine`` as a balanced tree: thousands of them nest only ~log2 deep."""
    if not conditions:
        return empty
    while len(conditions) > 1:
        pairs = zip(conditions[::2], conditions[1::2], strict=False)
        joined = [combine(left, right) for left, right in pairs]
        conditions = joined + conditions[len(joined) * 2 :]
    return conditions[0]


def _flag_bit(flag: str) -> Any:
    """``system_flags & bit`` with the bit written into the SQL, not bound: SQLite uses a partial
    index (store.models: message_unseen) only for a condition it can see is the index's own."""
    return Message.system_flags.bin_and(peewee.SQL(str(flag_bit(flag))))


_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _body_contains(body: Any, text: str) -> Any:
    """``body`` (a BLOB/bytea expression) holds the UTF-8 bytes of ``text``, ASCII letters in any case.

    SQLite's LIKE does exactly that once the BLOB is cast to TEXT (it never matches a BLOB). On
    PostgreSQL, a cast would give the bytes' hex form and LIKE is case-sensitive: the bytes are read
    as Latin-1 (one character per byte, so no encoding error) and ASCII letters are folded on both
    sides.
    """
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        pattern = text.encode().decode("latin-1").translate(str.maketrans(_ASCII_UPPER, _ASCII_UPPER.lower()))
        chars = peewee.fn.convert_from(body, "LATIN1")
        return _contains(peewee.fn.translate(chars, _ASCII_UPPER, _ASCII_UPPER.lower()), pattern)
    return _contains(peewee.Cast(body, "TEXT"), text)


def to_sql(term: Term) -> Any:
    """The SQL condition (a peewee expression over Message) of a search term."""
    match term:
        case HasFlag(flag) if flag in SYSTEM_FLAGS:
            return _flag_bit(flag) != peewee.SQL("0")
        case Not(HasFlag(flag)) if flag in SYSTEM_FLAGS:  # as the partial index says it (UNSEEN)
            return _flag_bit(flag) == peewee.SQL("0")
        case HasFlag(flag):
            spaced = peewee.Value(" ").concat(Message.keywords).concat(" ")
            return _contains(peewee.fn.lower(spaced), f" {flag.lower()} ")
        case UidRanges(ranges):
            return _balanced(operator.or_, [Message.uid.between(low, high) for low, high in ranges], _FALSE)
        case Size(larger, octets):
            return Message.size > octets if larger else Message.size < octets
        case Arrival(relation, day):
            return _relation(Message.internaldate, relation, _midnight(day), _midnight(day + _ONE_DAY))
        case Sent(relation, day):
            return Message.sent_date.is_null(False) & _relation(
                Message.sent_date, relation, day, day + _ONE_DAY
            )
        case HeaderContains(name, text):
            fields = HeaderField.select(peewee.SQL("1")).where(
                HeaderField.message == Message.id,
                HeaderField.name == name,
                _contains(HeaderField.value, searchable(text)),
            )
            return peewee.fn.EXISTS(fields)
        case BodyContains(text, whole):
            body = Message.body if whole else peewee.fn.substr(Message.body, Message.header_size + 1)
            return _body_contains(body, text)
        case Not(inner):
            return ~to_sql(inner)
        case Or(left, right):
            return to_sql(left) | to_sql(right)
        case And(terms):
            return _balanced(operator.and_, [to_sql(term) for term in terms], _TRUE)
    raise TypeError(f"not a search term: {term!r}")


_UNSEEN = Not(HasFlag("\\Seen"))


def _uses_unseen_index(term: Term) -> bool:
    """Whether every match must lack \\Seen (UNSEEN is one of the keys all to be met), so that
    the partial index of unseen messages holds every candidate."""
    return term == _UNSEEN or (isinstance(term, And) and _UNSEEN in term.terms)


def matching_text(mailbox_id: int, term: Term, max_uid: int) -> str:
    """The UIDs (ascending, at most ``max_uid``) of the messages in a mailbox that ``term``
    matches, space separated: what UID SEARCH answers.

    On SQLite the database writes the list (group_concat): a Python object per matching row costs
    more than the search itself. A search that needs UNSEEN reads the partial unseen index
    (SQLite would rather take the covering flags index and test every message).
    """
    query = (
        Message.select(Message.uid)
        .where(Message.mailbox == mailbox_id, Message.uid <= max_uid, to_sql(term))
        .order_by(Message.uid)
    )
    if not isinstance(database.obj, peewee.SqliteDatabase):
        return " ".join(str(uid) for (uid,) in rows(query))
    sql, params = query.sql()
    if _uses_unseen_index(term):
        sql = sql.replace('FROM "message" AS "t1"', 'FROM "message" AS "t1" INDEXED BY "message_unseen"', 1)
    (text,) = database.execute_sql(f"SELECT group_concat(\"uid\", ' ') FROM ({sql})", params).fetchone()
    return text or ""


def matching_uids(mailbox_id: int, term: Term, max_uid: int) -> array[int]:
    """UIDs (ascending, at most ``max_uid``) of the messages in a mailbox that ``term`` matches."""
    return array("Q", map(int, matching_text(mailbox_id, term, max_uid).split()))
