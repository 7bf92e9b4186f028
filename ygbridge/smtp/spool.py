"""A message's bytes while they arrive (DATA, BDAT), with no file I/O on the reactor.

The first :data:`IN_MEMORY` octets stay in memory; past that, everything goes to a temporary
file that a worker thread creates, writes and reads back (``Offload``), one job at a time per
spool, so the octets stay in order. What arrives while the worker writes waits in memory and goes
in its next job: at worst (a stalled disk) that is what the connection received meanwhile, never
more than the message size limit, which the commit holds in memory anyway.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from typing import IO, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

#: Runs a blocking call somewhere (a worker thread) and fires with its result.
Offload = Callable[..., "Deferred[Any]"]

#: A message up to this many octets is never written to a file.
IN_MEMORY = 1024 * 1024


def in_threads(reactor: Any) -> Offload:
    """Run blocking calls on ``reactor``'s thread pool (an IReactorThreads)."""
    assert IReactorThreads.providedBy(reactor) and IReactorFromThreads.providedBy(reactor)
    return partial(deferToThreadPool, reactor, reactor.getThreadPool())


def at_once(call: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run a blocking call where it is asked for (unit tests: no threads)."""
    return maybeDeferred(call, *args)


class Spool:
    """Collects a message's octets; :meth:`read` gives them back whole, once."""

    def __init__(self, offload: Offload, memory: int = IN_MEMORY) -> None:
        self._offload = offload
        self._memory = memory
        self._chunks: list[bytes] = []  # in memory: the whole message, or what waits for the worker
        self._held = 0
        self._spilled = False  # the octets go to the file (which the worker may not have opened yet)
        self._file: IO[bytes] | None = None  # the worker's
        self._job: Deferred[Any] | None = None  # the worker's job under way
        self._error: BaseException | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        """Add octets (a failed file write shows in :meth:`read`)."""
        if self._closed or self._error is not None:
            return
        self._chunks.append(data)
        self._held += len(data)
        if self._spilled or self._held > self._memory:
            self._flush()

    async def read(self) -> bytes:
        """All the octets written; raises the OSError of a failed file write."""
        if not self._spilled:
            return b"".join(self._chunks)
        while True:
            if self._error is not None:
                raise self._error
            if self._job is not None:
                await self._job
            elif self._chunks:
                self._flush()
            else:
                break
        self._job = self._offload(self._read_file)
        try:
            data: bytes = await self._job
        finally:
            self._job = None
            if self._closed:
                self._close_file()
        return data

    def close(self) -> None:
        """Drop the octets (and the file, once no write is under way)."""
        self._closed = True
        self._chunks, self._held = [], 0
        if self._job is None:
            self._close_file()

    # -- the worker's jobs, in order

    def _flush(self) -> None:
        if self._job is not None:
            return  # the running job's end starts the next
        batch, self._chunks, self._held = self._chunks, [], 0
        self._spilled = True
        self._job = self._offload(self._write_file, batch)
        self._job.addBoth(self._wrote)

    def _wrote(self, result: None | Failure) -> None:
        self._job = None
        if isinstance(result, Failure):
            self._error = result.value
            self._chunks, self._held = [], 0
        if self._closed:
            self._close_file()
        elif self._chunks and self._error is None:
            self._flush()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            self._offload(file.close).addErrback(lambda _: None)

    def _write_file(self, batch: list[bytes]) -> None:  # worker thread
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        self._file.writelines(batch)

    def _read_file(self) -> bytes:  # worker thread
        assert self._file is not None
        self._file.seek(0)
        return self._file.read()
