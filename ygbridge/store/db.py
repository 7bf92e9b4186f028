"""Opening the database, schema migrations, and the one thread that runs blocking DB work.

Peewee keeps one connection per thread. The command (``ygbridge user add``...) calls store
functions on its own thread; the service calls them only through :class:`DBThread`, and once
that has started, a connection on any other thread is refused with :class:`OffThreadStoreCall`
(a store call on the reactor would block it): the rule is kept by the database, not by care.

A SQLite database and its directory are private to the service's user: the directory is created
0700 and the database file 0600 (SQLite gives its -wal and -shm files the database file's mode),
whatever the process umask. Write transactions take SQLite's write lock when they begin, so that
commands sharing a database (``ygbridge status`` while ``init`` migrates, the service beside
``user add``) wait for each other for up to :data:`BUSY_TIMEOUT` seconds instead of failing with
"database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import structlog
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ygbridge.config import sqlite_path
from ygbridge.errors import ConfigError
from ygbridge.store.drivers import is_postgresql
from ygbridge.store.migrations import MIGRATIONS
from ygbridge.store.models import MODELS, SCHEMA_VERSION, SchemaVersion, database

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: How long a command waits for another one holding the SQLite database's write lock (seconds).
BUSY_TIMEOUT = 60.0

SQLITE_PRAGMAS = {
    "busy_timeout": int(BUSY_TIMEOUT * 1000),  # first: switching to WAL may itself have to wait
    "journal_mode": "wal",
    "synchronous": "full",  # a commit is on disk before its 250 (WAL: the log is fsynced each commit)
    "foreign_keys": 1,
}

PG_DUMP_HINT = "ygbridge does not copy a PostgreSQL database itself: back it up with pg_dump -Fc"
POSTGRESQL_DRIVER_HINT = "PostgreSQL needs its driver: pip install 'ygbridge[postgresql]'"


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (its directory 0700) unless it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class OffThreadStoreCall(RuntimeError):
    """A store function ran outside the DB thread while a :class:`DBThread` serves the database."""


#: ``is_db_thread`` is set on the threads of :class:`DBThread`.
_this_thread = threading.local()


class _DBThreadOnly(peewee.Database):
    """A database that connects only on a DB thread once :meth:`keep_to_db_thread` was called."""

    kept = False

    def keep_to_db_thread(self) -> None:
        """Close this thread's connection (the one opened to migrate); from now on only a DB
        thread may connect. Every query on a thread without a connection connects first, so
        a store call anywhere else raises :class:`OffThreadStoreCall`."""
        self.close()
        self.kept = True

    def connect(self, reuse_if_open: bool = False) -> bool:
        if self.kept and not getattr(_this_thread, "is_db_thread", False):
            raise OffThreadStoreCall(
                f"a store function ran on thread {threading.current_thread().name!r}: while the "
                "service runs, store functions run only on the DB thread (DBThread.run)"
            )
        connected: bool = super().connect(reuse_if_open)
        return connected


class SqliteDatabase(_DBThreadOnly, peewee.SqliteDatabase):
    """SQLite, kept to the DB thread while the service runs."""


class PostgresqlDatabase(_DBThreadOnly, peewee.PostgresqlDatabase):
    """PostgreSQL, kept to the DB thread while the service runs."""


def open_database(url: str, base_dir: Path) -> SqliteDatabase | PostgresqlDatabase:
    """The database named by ``url`` (sqlite:///file or postgresql://...), not yet connected."""
    path = sqlite_path(url, base_dir)
    db: SqliteDatabase | PostgresqlDatabase
    if path is not None:
        create_private_file(path)
        db = SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, timeout=BUSY_TIMEOUT, lock_type="IMMEDIATE")
    elif is_postgresql(url):
        parts = urlsplit(url)
        # libpq's ?host=/var/run/postgresql names a unix socket directory
        query = dict(parse_qsl(parts.query))
        db = PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username or "") or None,
            password=unquote(parts.password or "") or None,
            host=query.get("host") or parts.hostname,
            port=parts.port,
        )
    else:
        raise ConfigError(f"[storage] database = {url!r}: expected sqlite:///PATH or postgresql://...")
    return db


def connect(url: str, base_dir: Path) -> SqliteDatabase | PostgresqlDatabase:
    """Open the database named by ``url``, connect, and migrate it (backing it up first)."""
    db = open_database(url, base_dir)
    try:
        database.initialize(db)
        db.connect(reuse_if_open=True)
        migrate(db)
    except peewee.ImproperlyConfigured:
        raise ConfigError(POSTGRESQL_DRIVER_HINT) from None
    except peewee.OperationalError as exc:
        raise ConfigError(f"cannot open database {_without_password(url)}: {exc}") from None
    return db


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _schema_version(db: peewee.Database) -> int:
    """The stored schema version; a new (empty) database counts as current."""
    row = SchemaVersion.select().first() if db.table_exists(SchemaVersion._meta.table_name) else None
    return SCHEMA_VERSION if row is None else row.version


def migrate(db: peewee.Database, backup_dir: Path | None = None) -> Path | None:
    """Bring the schema up to date: run the forward migrations, then create missing tables.

    A SQLite database about to be migrated is first copied to
    ``<database>.schema-<old version>-<time>.bak`` (mode 0600) in ``backup_dir`` (default: beside
    it); the path of that copy is returned, else None. A PostgreSQL database is not copied: the
    log says to take a ``pg_dump`` first.
    """
    backup = None
    old = _schema_version(db)
    if old < SCHEMA_VERSION and isinstance(db, peewee.SqliteDatabase) and db.database != ":memory:":
        source = Path(db.database)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = (backup_dir or source.parent) / f"{source.name}.schema-{old}-{stamp}.bak"
        backup_sqlite(db, backup)
        log.warning("store.migrating", old=old, new=SCHEMA_VERSION, backup=str(backup))
    elif old < SCHEMA_VERSION and isinstance(db, peewee.PostgresqlDatabase):
        log.warning("store.migrating", old=old, new=SCHEMA_VERSION, backup=None, hint=PG_DUMP_HINT)
    with db.atomic():
        current = _schema_version(db)  # again, inside the write lock: another command may have migrated
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"the database has schema version {current}, newer than this ygbridge "
                f"understands ({SCHEMA_VERSION}): upgrade ygbridge"
            )
        for version in range(current, SCHEMA_VERSION):
            MIGRATIONS[version](db)
        db.create_tables(MODELS, safe=True)
        if SchemaVersion.select().count() != 1 or current != SCHEMA_VERSION:
            SchemaVersion.delete().execute()
            SchemaVersion.create(version=SCHEMA_VERSION)
    return backup


def backup_sqlite(db: peewee.Database, target: Path) -> None:
    """Copy the open SQLite database ``db`` to ``target`` (a new file, mode 0600) with SQLite's
    online backup API: a consistent copy while other connections go on reading and writing."""
    if target.exists():
        raise ConfigError(f"{target} exists already: name a new file for the backup")
    create_private_file(target)
    destination = sqlite3.connect(target)
    try:
        db.connection().backup(destination)
    finally:
        destination.close()


class DBRunner(Protocol):
    """What runs blocking store functions: :class:`DBThread`, or a test fake."""

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn(*args, **kwargs)`` where blocking store calls belong; a Deferred of its result."""


class DBThread(Service):
    """Runs blocking store functions one at a time on a dedicated thread (after :func:`connect`).

    From its start, the database connects on no other thread (:class:`OffThreadStoreCall`).
    """

    def __init__(self, reactor: IReactorThreads) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ygbridge-db")

    def startService(self) -> None:
        super().startService()
        database.obj.keep_to_db_thread()
        self._pool.start()

    def stopService(self) -> Deferred[None]:
        """Let the thread finish the work queued so far and close its connection, then end it;
        fires once it has, without blocking the reactor meanwhile (at once if it never started)."""
        if not self.running:
            return succeed(None)
        super().stopService()
        finished = deferToThreadPool(self._reactor, self._pool, database.close)
        return finished.addBoth(self._finished)

    def _finished(self, closed: bool | Failure) -> None:
        self._pool.stop()  # the thread has nothing left to do: it ends at once
        if isinstance(closed, Failure):
            log.error("store.close_failed", error=closed.getErrorMessage())

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Call ``fn(*args, **kwargs)`` on the DB thread; its result must be plain values."""
        return deferToThreadPool(self._reactor, self._pool, self._call, partial(fn, *args, **kwargs))

    def _call(self, work: Callable[[], T]) -> T:
        _this_thread.is_db_thread = True
        database.connect(reuse_if_open=True)
        return work()
