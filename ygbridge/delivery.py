"""The queue runner: tries each destination's queue, oldest first, with backoff between attempts."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Awaitable, Callable

import structlog
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ygbridge.smtp.client import Reply
from ygbridge.store import queue
from ygbridge.store.db import StoreThread

log = structlog.get_logger(__name__)

Send = Callable[[ipaddress.IPv6Address, str, list[str], bytes], Awaitable[dict[str, Reply]]]


def backoff(attempts: int, initial: float, maximum: float, jitter: float) -> float:
    """Seconds before the next try after ``attempts`` failures; ``jitter`` in [0, 1) spreads it +-25%."""
    return min(maximum, initial * 2.0**attempts) * (0.75 + jitter / 2)


class DeliveryService(Service):
    """Delivers queued mail; :meth:`poke` tries a destination at once."""

    def __init__(
        self,
        clock: IReactorTime,
        store: StoreThread,
        send: Send,
        *,
        interval: float,
        retry_initial: float,
        retry_max: float,
        concurrency: int = 8,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._store = store
        self._send = send
        self._interval = interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._concurrency = concurrency
        self._jitter = jitter
        self._active: set[str] = set()
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def poke(self, destination: str) -> None:
        """Try ``destination`` now (new mail for it, or it just became reachable)."""
        self._start(destination)

    def _tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run_due())

    async def _run_due(self) -> None:
        try:
            destinations = await self._store.run(queue.due_destinations, self._clock.seconds())
        except Exception as exc:  # the loop must survive a bad tick
            log.error("delivery.tick_failed", error=str(exc))
            return
        for destination in destinations:
            self._start(destination)

    def _start(self, destination: str) -> None:
        if destination in self._active or len(self._active) >= self._concurrency:
            return
        self._active.add(destination)
        drained = Deferred.fromCoroutine(self._drain(destination))
        drained.addErrback(
            lambda f: log.error("delivery.drain_failed", destination=destination, error=f.getErrorMessage())
        )
        drained.addBoth(lambda _: self._active.discard(destination))

    async def _drain(self, destination: str) -> None:
        """Send due messages to one node until none is left or the node stops answering."""
        while True:
            message = await self._store.run(queue.next_due, destination, self._clock.seconds())
            if message is None or not await self._attempt(destination, message):
                return

    async def _attempt(self, destination: str, message: queue.QueuedMessage) -> bool:
        """Try one message; True when the next one may follow at once."""
        addresses = [address for _, address in message.recipients]
        try:
            results = await self._send(
                ipaddress.IPv6Address(destination), message.sender, addresses, message.body
            )
        except Exception as exc:
            await self._postpone(
                message, [rid for rid, _ in message.recipients], f"{type(exc).__name__}: {exc}"
            )
            return False
        done = [
            rid for rid, address in message.recipients if results[address].ok or results[address].permanent
        ]
        later = [rid for rid, _ in message.recipients if rid not in done]
        for _, address in message.recipients:
            reply = results[address]
            if reply.ok:
                log.info(
                    "delivery.delivered",
                    destination=destination,
                    recipient=address,
                    message_id=message.message_id,
                )
            elif reply.permanent:
                log.error("delivery.failed", destination=destination, recipient=address, reply=str(reply))
        if done:
            await self._store.run(queue.remove, message.id, done)
        if later:
            errors = {str(results[address]) for rid, address in message.recipients if rid in later}
            await self._postpone(message, later, "; ".join(sorted(errors)))
            return False
        return True

    async def _postpone(self, message: queue.QueuedMessage, recipient_ids: list[int], error: str) -> None:
        delay = backoff(message.attempts, self._retry_initial, self._retry_max, self._jitter())
        log.warning("delivery.deferred", message_id=message.message_id, error=error, retry_in=round(delay, 1))
        await self._store.run(queue.postpone, recipient_ids, error, self._clock.seconds() + delay)
