"""Opening the database, schema migrations, and the one thread that runs blocking DB work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import peewee
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ygbridge.errors import ConfigError
from ygbridge.store.migrations import MIGRATIONS
from ygbridge.store.models import MODELS, SCHEMA_VERSION, SchemaVersion, database

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",  # a commit is on disk before its 250 (WAL: the log is fsynced each commit)
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


def sqlite_path(url: str, base_dir: Path) -> Path | None:
    """The file of a ``sqlite:///`` URL (relative to ``base_dir``), or None for other URLs."""
    if not url.startswith("sqlite:"):
        return None
    path = Path(unquote(urlsplit(url).path[1:] if url.startswith("sqlite:///") else url[7:]))
    return path if path.is_absolute() else base_dir / path


def connect(url: str, base_dir: Path) -> peewee.Database:
    """Open the database named by ``url`` (sqlite:///file or postgresql://...) and migrate it."""
    path = sqlite_path(url, base_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db: peewee.Database = peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    elif url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        db = peewee.PostgresqlDatabase(
            parts.path.lstrip("/"),
            user=unquote(parts.username or "") or None,
            password=unquote(parts.password or "") or None,
            host=parts.hostname,
            port=parts.port,
        )
    else:
        raise ConfigError(f"[storage] database = {url!r}: expected sqlite:///PATH or postgresql://...")
    database.initialize(db)
    try:
        db.connect(reuse_if_open=True)
    except peewee.OperationalError as exc:
        raise ConfigError(f"cannot open database {url}: {exc}") from None
    migrate(db)
    return db


def migrate(db: peewee.Database) -> None:
    """Bring the schema up to date: run the forward migrations, then create missing tables."""
    with db.atomic():
        row = SchemaVersion.select().first() if db.table_exists(SchemaVersion._meta.table_name) else None
        current = SCHEMA_VERSION if row is None else row.version  # a new database starts current
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"the database has schema version {current}, newer than this ygbridge "
                f"understands ({SCHEMA_VERSION}): upgrade ygbridge"
            )
        for version in range(current, SCHEMA_VERSION):
            MIGRATIONS[version](db)
        db.create_tables(MODELS, safe=True)
        SchemaVersion.delete().execute()
        SchemaVersion.create(version=SCHEMA_VERSION)


class StoreThread(Service):
    """Runs blocking store functions one at a time on a dedicated thread (after :func:`connect`)."""

    def __init__(self, reactor: IReactorThreads) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ygbridge-db")

    def startService(self) -> None:
        super().startService()
        self._pool.start()

    def stopService(self) -> None:
        super().stopService()
        self._pool.stop()

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Call ``fn(*args, **kwargs)`` on the DB thread; its result must be plain values."""
        return deferToThreadPool(self._reactor, self._pool, self._call, fn, *args, **kwargs)

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        database.connect(reuse_if_open=True)
        return fn(*args, **kwargs)
