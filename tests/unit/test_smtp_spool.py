"""The DATA spool: in memory up to its bound, then a file written and read by the offload, in order."""

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ygbridge.smtp.spool import Spool, at_once


class Worker:
    """An offload whose jobs run when the test says so (as a worker thread would, later)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, call: Callable[..., Any], *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.jobs.append((call, args, done))
        return done

    def run(self) -> None:
        call, args, done = self.jobs.pop(0)
        try:
            result = call(*args)
        except Exception as exc:
            done.errback(exc)
        else:
            done.callback(result)


def _read(spool: Spool) -> Deferred[bytes]:
    return Deferred.fromCoroutine(spool.read())


def test_a_small_message_stays_in_memory() -> None:
    worker = Worker()
    spool = Spool(worker, memory=10)
    spool.write(b"0123")
    spool.write(b"456789")
    assert _read(spool).result == b"0123456789" and worker.jobs == []


def test_past_the_bound_the_worker_writes_in_order_what_arrives_meanwhile() -> None:
    worker = Worker()
    spool = Spool(worker, memory=4)
    spool.write(b"abc")
    spool.write(b"def")  # past the bound: one job for both
    spool.write(b"gh")  # waits for that job
    spool.write(b"ij")
    assert len(worker.jobs) == 1
    worker.run()
    assert len(worker.jobs) == 1  # the next job takes what waited
    read = _read(spool)
    while worker.jobs:
        worker.run()
    assert read.result == b"abcdefghij"
    spool.close()
    worker.run()  # the file's close
    assert worker.jobs == []


def test_a_failed_write_fails_the_read_and_drops_the_rest() -> None:
    spool = Spool(at_once, memory=2)

    def full(batch: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    spool._write_file = full  # type: ignore[method-assign]
    spool.write(b"abc")
    spool.write(b"def")
    read = _read(spool)
    assert isinstance(read.result, Failure) and read.result.check(OSError)
    read.addErrback(lambda _: None)


def test_closing_during_a_write_closes_the_file_after_it() -> None:
    worker = Worker()
    spool = Spool(worker, memory=1)
    spool.write(b"abc")
    spool.close()
    assert len(worker.jobs) == 1  # the write is under way: the file is closed after it
    worker.run()
    assert len(worker.jobs) == 1
    file = spool._file
    worker.run()
    assert file is None or file.closed
