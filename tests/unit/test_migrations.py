"""The oldest schema (1), made with its own SQL, upgraded to the newest: every fact survives."""

from __future__ import annotations

from datetime import date

import peewee

from ygbridge.store import messages, queue, search
from ygbridge.store.db import migrate
from ygbridge.store.mailboxes import find_mailbox
from ygbridge.store.models import SCHEMA_VERSION, HeaderField, Message, SchemaVersion, User, database

#: Schema 1 as ygbridge 0.1 created it (SQLite), frozen here like the migrations themselves.
SCHEMA_1 = (
    'CREATE TABLE "schema_version" ("id" INTEGER NOT NULL PRIMARY KEY, "version" INTEGER NOT NULL)',
    'CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(64) NOT NULL, '
    '"password_hash" BLOB NOT NULL, "created" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "user_name" ON "user" ("name")',
    'CREATE TABLE "mailbox" ("id" INTEGER NOT NULL PRIMARY KEY, "user_id" INTEGER NOT NULL, '
    '"name" VARCHAR(255) NOT NULL, "uidvalidity" INTEGER NOT NULL, "uidnext" INTEGER NOT NULL, '
    '"subscribed" INTEGER NOT NULL, "special_use" VARCHAR(16), '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "mailbox_user_id_name" ON "mailbox" ("user_id", "name")',
    'CREATE TABLE "message" ("id" INTEGER NOT NULL PRIMARY KEY, "mailbox_id" INTEGER NOT NULL, '
    '"uid" INTEGER NOT NULL, "flags" TEXT NOT NULL, "internaldate" REAL NOT NULL, "size" INTEGER NOT NULL, '
    '"body" BLOB NOT NULL, "message_id" VARCHAR(998), "sender_node" VARCHAR(64), '
    'FOREIGN KEY ("mailbox_id") REFERENCES "mailbox" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "message_mailbox_id_uid" ON "message" ("mailbox_id", "uid")',
    'CREATE TABLE "outgoing_message" ("id" INTEGER NOT NULL PRIMARY KEY, "sender" VARCHAR(998) NOT NULL, '
    '"body" BLOB NOT NULL, "message_id" VARCHAR(998), "created" REAL NOT NULL)',
    'CREATE TABLE "outgoing_recipient" ("id" INTEGER NOT NULL PRIMARY KEY, "message_id" INTEGER NOT NULL, '
    '"recipient" VARCHAR(998) NOT NULL, "destination" VARCHAR(64) NOT NULL, "attempts" INTEGER NOT NULL, '
    '"next_attempt" REAL NOT NULL, "last_error" TEXT, '
    'FOREIGN KEY ("message_id") REFERENCES "outgoing_message" ("id") ON DELETE CASCADE)',
    'CREATE TABLE "node_record" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(64) NOT NULL, '
    '"address" VARCHAR(64) NOT NULL, "seen" REAL NOT NULL)',
)
FIRST = (
    b"From: Alice <a@x.meship>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Tue, 7 Nov 2023 10:00:00 +0100\r\n\r\nhi\r\n"
)
SECOND = b"Subject: second\r\n\r\nbody\r\n"


def test_schema_1_upgrades_to_the_newest_keeping_mail_flags_and_queue() -> None:
    db = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    database.initialize(db)
    for statement in SCHEMA_1:
        db.execute_sql(statement)
    db.execute_sql('INSERT INTO "schema_version" ("version") VALUES (1)')
    db.execute_sql("INSERT INTO \"user\" VALUES (1, 'alice', X'00', 1.0)")
    db.execute_sql("INSERT INTO \"mailbox\" VALUES (1, 1, 'INBOX', 1700000000, 3, 1, NULL)")
    db.execute_sql("INSERT INTO \"mailbox\" VALUES (2, 1, 'Trash', 1700000000, 1, 1, '\\Trash')")
    rows = [(1, 1, "\\seen $Chat \\Recent", 10.0, FIRST), (2, 2, "\\Flagged", 20.0, SECOND)]
    for row_id, uid, flags, when, body in rows:
        db.execute_sql(
            'INSERT INTO "message" VALUES (?, 1, ?, ?, ?, ?, ?, NULL, NULL)',
            (row_id, uid, flags, when, len(body), body),
        )
    db.execute_sql("INSERT INTO \"outgoing_message\" VALUES (1, 'a@x.meship', X'6d0d0a', '<1@x>', 5.0)")
    db.execute_sql("INSERT INTO \"outgoing_recipient\" VALUES (1, 1, 'b@y.meship', '203::1', 2, 6.0, 'busy')")

    migrate(db)

    assert SchemaVersion.get().version == SCHEMA_VERSION
    assert User.get().last_uidvalidity == 1700000000
    inbox = find_mailbox("alice", "INBOX")
    assert (inbox.total, inbox.unseen, inbox.uidnext, inbox.recent_from) == (2, 1, 3, 3)
    loaded = messages.load_messages(inbox.id, [1, 2], bodies=True)
    assert [(m.uid, m.flags, m.body) for m in loaded] == [
        (1, {"\\Seen", "$Chat"}, FIRST),
        (2, {"\\Flagged"}, SECOND),
    ]
    first = Message.get(Message.uid == 1)
    assert (first.header_size, first.sent_date) == (len(FIRST) - 4, date(2023, 11, 7))
    assert ("subject", "grüsse") in {
        (f.name, f.value) for f in HeaderField.select().where(HeaderField.message == first)
    }
    assert list(search.matching_uids(inbox.id, search.HeaderContains("subject", "GRÜSSE"), 9)) == [1]
    assert list(search.matching_uids(inbox.id, search.Not(search.HasFlag("\\Seen")), 9)) == [2]
    counts = messages.mailbox_counts(inbox.id)
    assert (counts.messages, counts.unseen, counts.recent) == (2, 1, 0)  # nothing recent after an upgrade
    due = queue.next_due("203::1", 10.0)
    assert due is not None and due.body == b"m\r\n" and not due.warned
    assert db.execute_sql("SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_unseen'").fetchone() == (
        1,
    )
    database.close()
