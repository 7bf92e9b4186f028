"""Store test doubles: a fresh migrated database (in-memory SQLite, or an emptied PostgreSQL one),
users and messages made straight through the store, and a DB runner that runs at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import peewee
from twisted.internet.defer import Deferred, fail, succeed

from ygbridge.store import messages
from ygbridge.store.db import migrate, open_database
from ygbridge.store.mailboxes import add_default_mailboxes
from ygbridge.store.models import MODELS, SchemaVersion, User, database

P = ParamSpec("P")
T = TypeVar("T")

#: The creation time of test users, so the UIDVALIDITY of their mailboxes.
CREATED = 1_700_000_000.0


class ImmediateDB:
    """DBThread's ``run`` signature, but ``fn`` runs at once on this thread.

    The Deferred it returns has already fired (or failed), so no reactor is needed.
    """

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """``fn(*args, **kwargs)`` now; an already fired (or failed) Deferred of its result."""
        try:
            return succeed(fn(*args, **kwargs))
        except Exception:
            return fail()


def memory_database(backend: str = "sqlite") -> peewee.Database:
    """Point the models at a new, migrated database: in-memory SQLite for ``sqlite``, else an
    emptied PostgreSQL database at that URL (as :func:`ygbridge.testing.postgresql.running_server`
    yields)."""
    if backend == "sqlite":
        db: peewee.Database = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
        database.initialize(db)
    else:
        db = open_database(backend, Path("/"))
        database.initialize(db)
        db.connect(reuse_if_open=True)
        if db.table_exists(SchemaVersion._meta.table_name):  # emptied, faster than made anew
            tables = [model._meta.table_name for model in reversed(MODELS)]
            db.execute_sql(
                "; ".join(f'DELETE FROM "{t}"' for t in tables)
                + "; "
                + "; ".join(
                    f"SELECT setval(pg_get_serial_sequence('\"{t}\"', 'id'), 1, false)" for t in tables
                )
            )
    migrate(db)
    return db


def make_user(name: str) -> User:
    """A user with the default mailboxes, made straight from the models."""
    user = User.create(name=name, password_hash=b"x", created=CREATED)
    add_default_mailboxes(user, CREATED)
    return user


def alice_database(store_backend: str) -> Iterator[None]:
    """A fresh database with user alice, for the length of a test (a fixture body)."""
    memory_database(store_backend)
    make_user("alice")
    yield
    database.close()


def add_message(body: bytes = b"Subject: x\r\n\r\nhi\r\n", mailbox: str = "INBOX", **kwargs: object) -> int:
    """Store a message for alice straight through store.messages; returns its UID."""
    options = {"flags": (), "internaldate": CREATED + 100, "message_id": None, "sender_node": None, **kwargs}
    added = messages.add_message("alice", mailbox, body, **options)  # type: ignore[arg-type]
    assert added is not None
    return added.uid
