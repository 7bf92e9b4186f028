"""Group commit: store writes that arrive while the DB thread is busy share one transaction.

The first write runs at once; writes that come while it runs wait, then go together in one
transaction (one fsync) when it ends. Each caller's Deferred fires once its own write is
committed, so a ``250`` that waits for it still means "on disk".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from ygbridge.store.db import StoreThread
from ygbridge.store.models import database

P = ParamSpec("P")
R = TypeVar("R")
Call = tuple[tuple[Any, ...], dict[str, Any]]


def _in_one_transaction(write: Callable[..., R], calls: list[Call]) -> list[R]:
    with database.atomic():
        return [write(*args, **kwargs) for args, kwargs in calls]


class GroupCommit(Generic[P, R]):
    """Calls ``write`` on the DB thread, many calls to a transaction when they come together
    (``write`` may open its own ``atomic()``: nested, it becomes a savepoint). When a shared
    transaction fails, each of its calls is tried alone, so one bad write fails only itself."""

    def __init__(self, store: StoreThread, write: Callable[P, R]) -> None:
        self._store = store
        self._write = write
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
        running = self._store.run(_in_one_transaction, self._write, [call for call, _ in batch])
        running.addBoth(self._committed, batch)

    def _committed(self, results: list[R] | Failure, batch: list[tuple[Call, Deferred[R]]]) -> None:
        if isinstance(results, Failure) and len(batch) > 1:
            alone = [self._store.run(_in_one_transaction, self._write, [call]) for call, _ in batch]
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
