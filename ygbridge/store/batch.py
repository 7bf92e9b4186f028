"""Group commit: store writes that arrive while the DB thread is busy share one transaction.

The first write runs at once; writes that come while it runs wait, then go together in one
transaction (one fsync) when it ends. Every :class:`GroupCommit` of one DB thread shares that
wait, so that different writes (a submission's enqueue, a delivery's removal, a mesh message's
final delivery) meet in one transaction too. Each caller's Deferred fires once its own write is
committed, so a ``250`` that waits for it still means "on disk".

A write whose loss in a power cut costs only a repeat (``synced=False``: the removal of delivered
mail, which a receiving node recognises by its Message-ID) is committed without an fsync of its
own (SQLite WAL with ``synchronous=NORMAL`` for that transaction) when it goes alone: it reaches
the disk with the next synced commit or checkpoint. A crash of the process alone loses nothing
either way.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Write:
    write: Callable[..., Any]
    call: Call
    synced: bool


def _in_one_transaction(writes: list[_Write]) -> list[Any]:
    synced = any(w.synced for w in writes)
    with contextlib.nullcontext() if synced else _unsynced(), database.atomic():
        return [w.write(*w.call[0], **w.call[1]) for w in writes]


class _Writes:
    """The writes waiting for one DB thread, and whether a transaction of them is running."""

    def __init__(self, store: DBRunner) -> None:
        self._store = store
        self._waiting: list[tuple[_Write, Deferred[Any]]] = []
        self._busy = False

    def add(self, write: _Write) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self._waiting.append((write, done))
        if not self._busy:
            self._flush()
        return done

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = True
        running = self._store.run(_in_one_transaction, [write for write, _ in batch])
        running.addBoth(self._committed, batch)

    def _committed(self, results: list[Any] | Failure, batch: list[tuple[_Write, Deferred[Any]]]) -> None:
        if isinstance(results, Failure) and len(batch) > 1:
            alone = [self._store.run(_in_one_transaction, [write]) for write, _ in batch]
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


_WRITES: weakref.WeakKeyDictionary[DBRunner, _Writes] = weakref.WeakKeyDictionary()


class GroupCommit(Generic[P, R]):
    """Calls ``write`` on the DB thread, many calls (of every GroupCommit of that thread) to a
    transaction when they come together (``write`` may open its own ``atomic()``: nested, it
    becomes a savepoint). When a shared transaction fails, each of its calls is tried alone, so
    one bad write fails only itself."""

    def __init__(self, store: DBRunner, write: Callable[P, R], *, synced: bool = True) -> None:
        writes = _WRITES.get(store)
        if writes is None:
            writes = _WRITES[store] = _Writes(store)
        self._writes = writes
        self._write = write
        self._synced = synced

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        """``write(*args, **kwargs)``; fires with its result once it is committed."""
        done: Deferred[R] = self._writes.add(_Write(self._write, (args, kwargs), self._synced))
        return done
