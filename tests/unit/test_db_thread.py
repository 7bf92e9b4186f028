"""The DB thread: the only thread that reaches the database while the service runs, and a stop
that waits for its queued work without blocking the reactor."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred

from ygbridge.store import users
from ygbridge.store.db import DBThread, OffThreadStoreCall, connect

T = TypeVar("T")
WAIT = 30.0


class ThreadedReactor:
    """The part of a reactor that ``deferToThreadPool`` uses: calls from the DB thread wait in a
    queue until the test, as the reactor thread, runs them."""

    def __init__(self) -> None:
        self._calls: queue.Queue[Callable[[], object]] = queue.Queue()

    def callFromThread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        self._calls.put(partial(f, *args, **kwargs))

    def result(self, deferred: Deferred[T]) -> T:
        """Run the calls from the DB thread until ``deferred`` has fired; its result."""
        results: list[Any] = []
        deferred.addBoth(results.append)
        while not results:
            self._calls.get(timeout=WAIT)()
        if isinstance(results[0], BaseException) or hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]  # type: ignore[no-any-return]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[DBThread, ThreadedReactor]]:
    connect(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    users.add_user("alice", b"hash", time.time())  # before the service: the command's way
    reactor = ThreadedReactor()
    store = DBThread(reactor)  # type: ignore[arg-type]
    store.startService()
    yield store, reactor
    if store.running:
        reactor.result(store.stopService())


def test_a_store_call_off_the_db_thread_fails_loudly(service: tuple[DBThread, ThreadedReactor]) -> None:
    store, reactor = service
    with pytest.raises(OffThreadStoreCall, match="only on the DB thread"):
        users.list_users()  # as if on the reactor: the connection opened to migrate is gone
    other: list[BaseException] = []
    thread = threading.Thread(target=lambda: other.extend(_raised(users.list_users)))
    thread.start()
    thread.join(WAIT)
    assert [type(error) for error in other] == [OffThreadStoreCall]
    assert reactor.result(store.run(users.list_users)) == ["alice"]


def _raised(fn: Callable[[], object]) -> list[BaseException]:
    try:
        fn()
    except BaseException as error:
        return [error]
    return []


def test_stop_waits_for_queued_work_without_blocking(service: tuple[DBThread, ThreadedReactor]) -> None:
    store, reactor = service
    release = threading.Event()
    safety = threading.Timer(WAIT, release.set)  # only if stopService blocked, to fail and not hang
    safety.start()

    def slow() -> list[str]:
        release.wait()
        return users.list_users()

    work = store.run(slow)
    stopped = store.stopService()
    returned_before_the_work = not release.is_set()
    release.set()
    safety.cancel()
    assert returned_before_the_work, "stopService waited for the DB thread on the reactor"
    assert not stopped.called
    assert reactor.result(work) == ["alice"]
    reactor.result(stopped)
    assert not [t for t in threading.enumerate() if "ygbridge-db" in t.name]


def test_stop_without_a_start_fires_at_once(tmp_path: Path) -> None:
    connect(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    store = DBThread(ThreadedReactor())  # type: ignore[arg-type]
    stopped = store.stopService()
    assert stopped.called
    assert not [t for t in threading.enumerate() if "ygbridge-db" in t.name]
