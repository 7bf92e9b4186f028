"""Schema 2 -> 3: the queue learns which senders were warned of a delay, keeping queued mail."""

import peewee

from ygbridge.notify import DsnRequest
from ygbridge.store import queue
from ygbridge.store.db import migrate
from ygbridge.store.models import MODELS, SCHEMA_VERSION, SchemaVersion, database


def test_version_2_queue_keeps_its_mail_and_gains_the_warned_column() -> None:
    db = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    database.initialize(db)
    db.create_tables(MODELS)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", "203::1")], 0)
    db.execute_sql('ALTER TABLE "outgoing_recipient" DROP COLUMN "warned"')
    for table, column in (("outgoing_message", "ret"), ("outgoing_message", "envid")):
        db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    for column in ("notify", "orcpt"):
        db.execute_sql(f'ALTER TABLE "outgoing_recipient" DROP COLUMN "{column}"')
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=2)
    migrate(db)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    message = queue.next_due("203::1", 1.0)
    assert message is not None and not message.warned
    queue.mark_warned([rid for rid, _ in message.recipients])
    warned = queue.next_due("203::1", 1.0)
    assert warned is not None and warned.warned
    assert warned.dsn.notify("b@y.meship").wants("FAILURE")  # no request: the default


def test_version_3_queue_keeps_its_mail_and_gains_the_dsn_request() -> None:
    db = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    database.initialize(db)
    db.create_tables(MODELS)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", "203::1")], 0)
    for table, column in (
        ("outgoing_message", "ret"),
        ("outgoing_message", "envid"),
        ("outgoing_recipient", "notify"),
        ("outgoing_recipient", "orcpt"),
    ):
        db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=3)
    migrate(db)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    message = queue.next_due("203::1", 1.0)
    assert message is not None and message.body == b"m\r\n" and message.dsn == DsnRequest()
