"""Forward schema migrations, one function per version step, run by store.db.migrate()."""

from __future__ import annotations

from collections.abc import Callable

import peewee

from ygbridge.store.flags import normalize_flags, pack_flags
from ygbridge.store.indexing import index_message
from ygbridge.store.messages import insert_fields
from ygbridge.store.models import HeaderField, Message

_BATCH = 200


def _to_2(db: peewee.Database) -> None:
    """Version 1 -> 2: flags as bits + keywords, and the SEARCH index of every message."""
    for column in (
        "system_flags INTEGER NOT NULL DEFAULT 0",
        "keywords TEXT NOT NULL DEFAULT ''",
        "header_size INTEGER NOT NULL DEFAULT 0",
        "sent_date DATE",
    ):
        db.execute_sql(f'ALTER TABLE "message" ADD COLUMN {column}')
    HeaderField.create_table(safe=True)
    batch = (
        f'SELECT "id", "flags", "body" FROM "message" WHERE "id" > {db.param} ORDER BY "id" LIMIT {db.param}'
    )
    last = 0
    while rows := db.execute_sql(batch, (last, _BATCH)).fetchall():
        for row_id, flags, body in rows:
            index = index_message(bytes(body))
            system_flags, keywords = pack_flags(normalize_flags(flags.split()))
            Message.update(
                system_flags=system_flags,
                keywords=keywords,
                header_size=index.header_size,
                sent_date=index.sent_date,
            ).where(Message.id == row_id).execute()
            insert_fields(row_id, index.fields)
            last = row_id
    db.execute_sql('ALTER TABLE "message" DROP COLUMN "flags"')


def _to_3(db: peewee.Database) -> None:
    """Version 2 -> 3: remember which queued recipients' senders had a delay warning."""
    if db.table_exists("outgoing_recipient"):  # else it is created whole after the migrations
        db.execute_sql('ALTER TABLE "outgoing_recipient" ADD COLUMN "warned" INTEGER NOT NULL DEFAULT 0')


def _to_4(db: peewee.Database) -> None:
    """Version 3 -> 4: each user remembers the last UIDVALIDITY given, never to give it again."""
    if "last_uidvalidity" not in {column.name for column in db.get_columns("user")}:
        db.execute_sql('ALTER TABLE "user" ADD COLUMN "last_uidvalidity" BIGINT NOT NULL DEFAULT 0')
    db.execute_sql(
        'UPDATE "user" SET "last_uidvalidity" = COALESCE('
        '(SELECT MAX("uidvalidity") FROM "mailbox" WHERE "mailbox"."user_id" = "user"."id"), 0)'
    )


#: The migration from each schema version to the next.
MIGRATIONS: dict[int, Callable[[peewee.Database], None]] = {1: _to_2, 2: _to_3, 3: _to_4}
