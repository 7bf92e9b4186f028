"""Forward schema migrations, one function per version step, run by store.db.migrate().

Each step is frozen: it uses its own SQL and the helpers below it in this module, never the live
models or the code that stores messages today, so a later change elsewhere cannot change what an
old upgrade does. A step that needs a table a later schema replaced writes it as it was then.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from collections.abc import Callable
from datetime import date

import peewee

_BATCH = 200

# Version 2's view of a message, as store.indexing and store.flags were when it was written.
_V2_SYSTEM_FLAGS = ("\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft")
_V2_HEADER_END = re.compile(rb"\r?\n\r?\n")
_V2_LINE_END = re.compile(rb"\r?\n")


def _v2_flags(text: str) -> tuple[int, str]:
    """(system flag bits, sorted space-separated keywords) of a version 1 ``flags`` column."""
    bits, keywords = 0, set()
    for flag in text.split():
        lowered = flag.lower()
        if lowered in _V2_SYSTEM_FLAGS:
            bits |= 1 << _V2_SYSTEM_FLAGS.index(lowered)
        elif not flag.startswith("\\"):
            keywords.add(flag)
    return bits, " ".join(sorted(keywords))


def _v2_decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def _v2_day(value: bytes) -> date | None:
    parsed = email.utils.parsedate_tz(value.decode("ascii", "replace"))
    if parsed is None:
        return None
    try:
        return date(*parsed[:3])
    except ValueError:
        return None


def _v2_index(raw: bytes) -> tuple[int, date | None, list[tuple[str, str]]]:
    """(header size, day of the Date field, searchable (name, value) fields) of a message."""
    blank = re.match(rb"\r?\n", raw)
    end = blank or _V2_HEADER_END.search(raw)
    header = raw if end is None else raw[: end.end()]
    fields: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower(), line))
    indexed, day = [], None
    for name, field in fields:
        if b":" not in field or not name or len(name) > 255:
            continue
        value = _V2_LINE_END.sub(b"", field.split(b":", 1)[-1]).strip()
        if name == b"date" and day is None:
            day = _v2_day(value)
        indexed.append((name.decode("ascii", "replace"), _v2_decode(value).casefold()))
    return len(header), day, indexed


def _serial(db: peewee.Database) -> str:
    return "SERIAL" if isinstance(db, peewee.PostgresqlDatabase) else "INTEGER"


def _to_2(db: peewee.Database) -> None:
    """Version 1 -> 2: flags as bits + keywords, and the SEARCH index of every message."""
    for column in (
        "system_flags INTEGER NOT NULL DEFAULT 0",
        "keywords TEXT NOT NULL DEFAULT ''",
        "header_size INTEGER NOT NULL DEFAULT 0",
        "sent_date DATE",
    ):
        db.execute_sql(f'ALTER TABLE "message" ADD COLUMN {column}')
    db.execute_sql(
        f'CREATE TABLE IF NOT EXISTS "header_field" ("id" {_serial(db)} NOT NULL PRIMARY KEY, '
        '"message_id" INTEGER NOT NULL, "name" VARCHAR(255) NOT NULL, "value" TEXT NOT NULL, '
        'FOREIGN KEY ("message_id") REFERENCES "message" ("id") ON DELETE CASCADE)'
    )
    db.execute_sql('CREATE INDEX IF NOT EXISTS "header_field_message_id" ON "header_field" ("message_id")')
    p = db.param
    batch = f'SELECT "id", "flags", "body" FROM "message" WHERE "id" > {p} ORDER BY "id" LIMIT {p}'
    update = (
        f'UPDATE "message" SET "system_flags" = {p}, "keywords" = {p}, "header_size" = {p}, '
        f'"sent_date" = {p} WHERE "id" = {p}'
    )
    insert = f'INSERT INTO "header_field" ("message_id", "name", "value") VALUES ({p}, {p}, {p})'
    last = 0
    while rows := db.execute_sql(batch, (last, _BATCH)).fetchall():
        for row_id, flags, body in rows:
            header_size, day, fields = _v2_index(bytes(body))
            system_flags, keywords = _v2_flags(flags)
            db.execute_sql(update, (system_flags, keywords, header_size, day, row_id))
            for name, value in fields:
                db.execute_sql(insert, (row_id, name, value))
            last = row_id
    db.execute_sql('ALTER TABLE "message" DROP COLUMN "flags"')


def _to_3(db: peewee.Database) -> None:
    """Version 2 -> 3: remember which queued recipients' senders had a delay warning."""
    _add_columns(db, "outgoing_recipient", {"warned": "INTEGER NOT NULL DEFAULT 0"})


def _to_4(db: peewee.Database) -> None:
    """Version 3 -> 4: each user remembers the last UIDVALIDITY given, never to give it again."""
    _add_columns(db, "user", {"last_uidvalidity": "BIGINT NOT NULL DEFAULT 0"})
    db.execute_sql(
        'UPDATE "user" SET "last_uidvalidity" = COALESCE('
        '(SELECT MAX("uidvalidity") FROM "mailbox" WHERE "mailbox"."user_id" = "user"."id"), 0)'
    )


def _to_5(db: peewee.Database) -> None:
    """Version 4 -> 5: keep each queued message's RFC 3461 request (RET, ENVID, NOTIFY, ORCPT)."""
    _add_columns(db, "outgoing_message", {"ret": "VARCHAR(4)", "envid": "VARCHAR(100)"})
    _add_columns(db, "outgoing_recipient", {"notify": "VARCHAR(40)", "orcpt": "VARCHAR(998)"})


#: The indexes schema 6 added.
_V6_INDEXES = (
    # FETCH FLAGS of a UID range without reading the messages
    'CREATE INDEX IF NOT EXISTS "message_flags" ON "message" '
    '("mailbox_id", "uid", "system_flags", "keywords")',
    # UNSEEN: the unseen messages of a mailbox, without reading the seen ones (\Seen is bit 8)
    'CREATE INDEX IF NOT EXISTS "message_unseen" ON "message" ("mailbox_id", "uid") '
    'WHERE ("system_flags" & 8) = 0',
    # the keywords in use in a mailbox (SELECT's FLAGS), without reading the messages without
    'CREATE INDEX IF NOT EXISTS "message_keywords" ON "message" ("mailbox_id", "keywords") '
    "WHERE \"keywords\" <> ''",
)


def _to_6(db: peewee.Database) -> None:
    """Version 5 -> 6: per-mailbox message and unseen counters, the first UID not yet \\Recent
    (nothing is recent after the upgrade), and the indexes UNSEEN and SELECT read."""
    _add_columns(
        db,
        "mailbox",
        {
            "total": "INTEGER NOT NULL DEFAULT 0",
            "unseen": "INTEGER NOT NULL DEFAULT 0",
            "recent_from": "BIGINT NOT NULL DEFAULT 1",
        },
    )
    db.execute_sql(
        'UPDATE "mailbox" SET "recent_from" = "uidnext", '
        '"total" = (SELECT COUNT(*) FROM "message" WHERE "message"."mailbox_id" = "mailbox"."id"), '
        '"unseen" = (SELECT COUNT(*) FROM "message" WHERE "message"."mailbox_id" = "mailbox"."id" '
        'AND ("message"."system_flags" & 8) = 0)'
    )
    for statement in _V6_INDEXES:
        db.execute_sql(statement)


def _add_columns(db: peewee.Database, table: str, columns: dict[str, str]) -> None:
    """Add the columns ``table`` lacks (a missing table is created whole after the migrations)."""
    if not db.table_exists(table):
        return
    present = {column.name for column in db.get_columns(table)}
    for name, kind in columns.items():
        if name not in present:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')


#: The migration from each schema version to the next.
MIGRATIONS: dict[int, Callable[[peewee.Database], None]] = {1: _to_2, 2: _to_3, 3: _to_4, 4: _to_5, 5: _to_6}
