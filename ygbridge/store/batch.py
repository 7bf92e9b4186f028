"""Group commit: store writes that arrive while the DB thread is busy share one transaction.

The first write runs at once; writes that come while it runs wait, then go together in one
transaction (one fsync) when it ends. Each caller's Deferred fires once its own write is
committed, so a ``250`` that waits for it still means "on disk".

A write whose loss in a power cut costs only a repeat (``synced=False``: the removal of delivered
mail, which a receiving node recognises by its Message-ID) is committed without an fsync of its
own (SQLite WAL with ``synchronous=NORMAL`` for that transaction): it reaches the disk with the
next synced commit or checkpoint. A crash of the process alone loses nothing either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar

import peewee
from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from ygbridge.store.db import DBRunner
from ygbridge.store.models import database

P = ParamSpec("P")
R = TypeVar("R")
Call = tuple[tuple[Any, ...], dict[str, Any]]


@contextlib.contextmanager
def _unsynced() -> Iterator[None]:
    """Commits inside are not synced to disk by themselves (SQLite; elsewhere a no-op)."""
    if not isinstance(database.obj, peewee.SqliteDatabase):
        yield
        return
    previous = database.execute_sql("PRAGMA synchronous").fetchone()[0]
    database.execute_sql("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        database.execute_sql(f"PRAGMA synchronous = {int(previous)}")


def _in_one_transaction(write: Callable[..., R], calls: list[Call], synced: bool = True) -> list[R]:
    with contextlib.nullcontext() if synced else _unsynced(), database.atomic():
        return [write(*args, **kwargs) for args, kwargs in calls]


class GroupCommit(Generic[P, R]):
    """Calls ``write`` on the DB thread, many calls to a transaction when they come together
    (``write`` may open its own ``atomic()``: nested, it becomes a savepoint). When a shared
    transaction fails, each of its calls is tried alone, so one bad write fails only itself."""

    def __init__(self, store: DBRunner, write: Callable[P, R], *, synced: bool = True) -> None:
        self._store = store
        self._write = write
        self._synced = synced
        self._waiting: list[tuple[Call, Deferred[R]]] = []
        self._busy = False

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        """``write(*args, **kwargs)``; fires with its result once it is committed."""
        done: Deferred[R] = Deferred()
        self._waiting.append(((args, kwargs), done))
        if not self._busy:
            self._flush()
        return done

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = True
        running = self._store.run(_in_one_transaction, self._write, [call for call, _ in batch], self._synced)
        running.addBoth(self._committed, batch)

    def _committed(self, results: list[R] | Failure, batch: list[tuple[Call, Deferred[R]]]) -> None:
        if isinstance(results, Failure) and len(batch) > 1:
            alone = [
                self._store.run(_in_one_transaction, self._write, [call], self._synced) for call, _ in batch
            ]
            for (_, done), result in zip(batch, alone, strict=True):
                result.addCallback(lambda one: one[0]).chainDeferred(done)
            gatherResults(alone, consumeErrors=True).addBoth(lambda _: self._idle())
            return
        for index, (_, done) in enumerate(batch):
            if isinstance(results, Failure):
                done.errback(results)
            else:
                done.callback(results[index])
        self._idle()

    def _idle(self) -> None:
        self._busy = False
        if self._waiting:
            self._flush()
