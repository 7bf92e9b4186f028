"""Group commit: writes that meet on a busy DB thread share one transaction."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from ygbridge.store import queue
from ygbridge.store.batch import GroupCommit
from ygbridge.store.db import connect
from ygbridge.store.models import OutgoingMessage, database
from ygbridge.testing.store import memory_database


class ManualDB:
    """DBThread's ``run``, but each call runs when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []
        self.transactions = 0

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.calls.append((fn, args, done))
        return done

    def finish(self) -> None:
        fn, args, done = self.calls.pop(0)
        self.transactions += 1
        try:
            result = fn(*args)
        except Exception:
            done.errback()
        else:
            done.callback(result)


def _enqueue(n: int) -> tuple[str, bytes, str, list[tuple[str, str]], float]:
    return ("a@x.meship", b"%d\r\n" % n, f"<{n}@x>", [("b@y.meship", "203::1")], 0.0)


def _ids(queued: list[tuple[str, queue.QueuedMessage]]) -> list[int]:
    return [message.id for _, message in queued]


def test_writes_that_wait_share_one_transaction() -> None:
    memory_database()
    db = ManualDB()
    enqueue = GroupCommit(db, queue.enqueue)  # type: ignore[arg-type]
    results = [enqueue(*_enqueue(n)) for n in range(5)]
    assert len(db.calls) == 1  # the first runs at once, the others wait for it
    db.finish()
    assert _ids(results[0].result) == [1] and not results[1].called
    assert len(db.calls) == 1
    db.finish()  # the four that waited, in one transaction
    assert [_ids(r.result) for r in results] == [[1], [2], [3], [4], [5]]
    assert db.transactions == 2 and not db.calls
    assert OutgoingMessage.select().count() == 5


def test_a_failing_write_fails_alone() -> None:
    memory_database()
    db = ManualDB()

    def write(n: int) -> int:
        if n == 2:
            raise ValueError("bad")
        return queue.enqueue(*_enqueue(n))

    group = GroupCommit(db, write)  # type: ignore[arg-type]
    results = [group(n) for n in range(4)]
    db.finish()
    db.finish()  # 1, 2, 3 together: rolled back, then each alone
    while db.calls:
        db.finish()
    failures: list[Any] = []
    results[2].addErrback(failures.append)
    assert failures and failures[0].check(ValueError)
    assert [_ids(results[n].result) for n in (0, 1, 3)] == [[1], [2], [3]]
    assert sorted(m.body for m in OutgoingMessage.select()) == [b"0\r\n", b"1\r\n", b"3\r\n"]


def test_an_unsynced_write_commits_without_its_own_fsync_and_restores_full(tmp_path: Path) -> None:
    connect("sqlite:///bridge.db", tmp_path)
    try:
        db = ManualDB()
        seen: list[int] = []

        def write(synced: bool) -> None:
            seen.append(database.execute_sql("PRAGMA synchronous").fetchone()[0])

        GroupCommit(db, write, synced=False)(False)  # type: ignore[arg-type]
        GroupCommit(db, write)(True)  # type: ignore[arg-type]
        db.finish()
        db.finish()
        assert seen == [1, 2]  # NORMAL for the unsynced one, FULL (the connection's own) otherwise
        assert database.execute_sql("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        database.close()


def test_different_writes_of_one_db_thread_share_a_transaction() -> None:
    memory_database()
    db = ManualDB()
    enqueue = GroupCommit(db, queue.enqueue)  # type: ignore[arg-type]
    remove = GroupCommit(db, queue.remove, synced=False)  # type: ignore[arg-type]
    first = enqueue(*_enqueue(0))
    removed, second = remove(1, [1]), enqueue(*_enqueue(1))  # they wait for the first
    db.finish()
    assert _ids(first.result) == [1] and len(db.calls) == 1  # both in the one transaction that follows
    db.finish()
    assert removed.called and second.called
    assert db.transactions == 2 and [m.body for m in OutgoingMessage.select()] == [b"1\r\n"]
