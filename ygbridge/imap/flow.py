"""Back-pressure: wait while the transport's write buffer is full."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class WriteGate:
    """A producer registered with a connection's transport for as long as it lasts.

    The transport pauses it when its buffer fills up and resumes it when the buffer drains;
    :meth:`wait` fires once writing may go on.
    """

    def __init__(self) -> None:
        self._paused = False
        self._waiting: list[Deferred[None]] = []

    @property
    def paused(self) -> bool:
        """Whether the transport's buffer is full."""
        return self._paused

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()  # the connection is gone: let the writer finish (its writes are dropped)

    def wait(self) -> Deferred[None]:
        """A Deferred that fires when the transport wants more data (at once if it is not paused)."""
        if not self._paused:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        return waiting
