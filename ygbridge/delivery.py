"""The queue runner: tries each destination's queue, oldest first, with backoff between attempts.

A recipient leaves the queue only after the peer's final 2xx for it, or with a bounce (RFC 3464)
after a permanent 5xx or once the retry horizon has passed.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from twisted.application.internet import TimerService
from twisted.internet.defer import CancelledError, Deferred, DeferredQueue, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ygbridge.addressing import domain_for
from ygbridge.dsn import DELAYED, EXPIRED, FAILED, RecipientFailure, status_of
from ygbridge.notify import DELAY, FAILURE, DsnRequest
from ygbridge.outcome import Reply, describe_failure
from ygbridge.store import queue
from ygbridge.store.batch import GroupCommit
from ygbridge.store.db import DBThread

log = structlog.get_logger(__name__)
_REPLY = re.compile(r"^(4\d\d) (.*)")

#: One SMTP transaction (``SMTPClient.send``): a coroutine, or a Deferred, of each recipient's reply.
Send = Callable[
    [ipaddress.IPv6Address, str, list[str], bytes, DsnRequest],
    Coroutine[Any, Any, dict[str, Reply]] | Deferred[dict[str, Reply]],
]
Report = Callable[[queue.QueuedMessage, list[RecipientFailure], str], Awaitable[None]]
Diagnose = Callable[[ipaddress.IPv6Address], Awaitable[str | None]]


async def _no_diagnosis(destination: ipaddress.IPv6Address) -> str | None:
    return None


def span(seconds: float) -> str:
    """A duration for people: ``5 days``, ``1.5 hours``, ``8 seconds``."""
    units = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))
    unit, size = next(((u, n) for u, n in units if seconds >= n), units[-1])
    count = f"{round(seconds / size, 1):g}"
    return f"{count} {unit}" + ("" if count == "1" else "s")


def backoff(attempts: int, initial: float, maximum: float, jitter: float) -> float:
    """Seconds before the next try after ``attempts`` failures; ``jitter`` in [0, 1) spreads it +-25%."""
    return min(maximum, initial * 2.0**attempts) * (0.75 + jitter / 2)


class DeliveryService(TimerService):
    """Delivers queued mail: on a timer, on :meth:`poke` (new mail), on :meth:`wake` (the
    destination connected to us) and :meth:`retry_now` (it just became reachable again), the
    last two skipping its backoff."""

    def __init__(
        self,
        clock: IReactorTime,
        store: DBThread,
        send: Send,
        report: Report,
        *,
        interval: float,
        retry_initial: float,
        retry_max: float,
        horizon: float,
        delay_warning: float = 0.0,
        per_node: int = 4,
        concurrency: int = 32,
        jitter: Callable[[], float] = random.random,
        diagnose: Diagnose = _no_diagnosis,
    ) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock
        self._clock = clock
        self._store = store
        # Many deliveries, one commit, synced with the next one: a removal lost in a power cut
        # means one repeat, which the receiving node recognises by the message's Message-ID.
        self._remove = GroupCommit(store, queue.remove, synced=False)
        self._send = send
        self._report = report
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._horizon = horizon
        self._delay_warning = delay_warning
        self._per_node = per_node
        self._concurrency = concurrency
        self._attempts = 0  # in flight, to every node
        self._wake: dict[str, DeferredQueue[bool | None]] = {}  # per drain: attempt ended, or new mail
        self._jitter = jitter
        self._diagnose = diagnose
        self._active: set[str] = set()
        self._again: set[str] = set()  # destinations to retry at once when their drain ends
        self._sending: dict[str, set[Deferred[dict[str, Reply]]]] = {}  # attempts in flight per node
        self._handed: dict[str, list[queue.QueuedMessage]] = {}  # per drain: just queued, not yet tried

    def poke(self, destination: str, message: queue.QueuedMessage | None = None) -> None:
        """Try ``destination``'s due mail now (new mail was queued for it): a drain under way
        looks for it at once, so that it can go on a connection of its own. ``message``, just
        queued, is tried as it is, without reading it back (a few per drain: the rest wait in
        the queue)."""
        handed = self._handed.get(destination)
        if message is not None and handed is not None and len(handed) < self._per_node:
            handed.append(message)
        wake = self._wake.get(destination)
        if wake is not None and not wake.pending:
            wake.put(None)
        self._start(destination, force=False, handed=[message] if message is not None else [])

    def wake(self, destination: str) -> None:
        """Try ``destination``'s mail now, whatever its backoff (it has just connected to us):
        the attempts in flight go on, and what waits for its backoff goes beside or after them."""
        wake = self._wake.get(destination)
        if wake is None:
            self._start(destination, force=True)
            return
        self._again.add(destination)
        if not wake.pending:
            wake.put(True)

    def retry_now(self, destination: str) -> None:
        """Try all of ``destination``'s mail now, whatever its backoff (it is reachable again).

        An attempt still in flight began while the node was away (its packets are dropped, so it
        would only end with its timeout): it is abandoned and started afresh.
        """
        if destination in self._active:
            self._again.add(destination)
            for sending in list(self._sending.get(destination, ())):
                sending.cancel()
        self._start(destination, force=True)

    def _tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run_due())

    async def _run_due(self) -> None:
        try:
            destinations = await self._store.run(queue.due_destinations, self._clock.seconds())
        except Exception as exc:  # the loop must survive a bad tick
            log.error("delivery.tick_failed", error=str(exc))
            return
        for destination in destinations:
            self._start(destination, force=False)

    def _start(self, destination: str, force: bool, handed: list[queue.QueuedMessage] | None = None) -> None:
        if not self.running or destination in self._active or self._attempts >= self._concurrency:
            return
        self._active.add(destination)
        drained = Deferred.fromCoroutine(self._drain(destination, force, handed or []))
        drained.addErrback(
            lambda f: log.error("delivery.drain_failed", destination=destination, error=f.getErrorMessage())
        )
        drained.addBoth(lambda _: self._drained(destination))

    def _drained(self, destination: str) -> None:
        self._active.discard(destination)
        if destination in self._again:
            self._again.discard(destination)
            self._start(destination, force=True)

    async def _drain(self, destination: str, force: bool, handed: list[queue.QueuedMessage]) -> None:
        """Send one node's messages, oldest first, up to ``per_node`` at a time, until none is due
        or the node stops answering (then the attempts in flight end and no new one starts).

        Once the node has answered, the rest of its queue follows whatever its backoff.
        """
        finished: DeferredQueue[bool | None] = DeferredQueue()
        self._wake[destination] = finished
        self._handed[destination] = handed
        try:
            await self._drain_loop(destination, force, finished, handed)
        finally:
            del self._wake[destination]
            del self._handed[destination]

    async def _drain_loop(
        self,
        destination: str,
        force: bool,
        finished: DeferredQueue[bool | None],
        handed: list[queue.QueuedMessage],
    ) -> None:
        inflight: set[int] = set()
        answering = True
        while self.running:
            room = min(self._per_node - len(inflight), self._concurrency - self._attempts)
            if answering and room > 0:
                messages = handed[:room]
                if messages:
                    del handed[:room]
                else:
                    messages = await self._store.run(
                        queue.due_messages, destination, self._clock.seconds(), force, inflight, room
                    )
                for message in messages:
                    handed[:] = [m for m in handed if m.id != message.id]  # also found in the queue
                    if message.id in inflight:
                        continue
                    inflight.add(message.id)
                    self._attempts += 1
                    attempt = Deferred.fromCoroutine(self._attempt(destination, message))
                    attempt.addErrback(self._attempt_failed, destination)
                    attempt.addBoth(self._attempt_ended, message.id, inflight, finished)
            if not inflight and not finished.pending:
                return
            ended = await finished.get()  # None: new mail was queued
            if ended is False:
                answering = False
            elif ended and answering:
                force = True

    def _attempt_failed(self, failure: Failure, destination: str) -> bool:
        log.error("delivery.attempt_failed", destination=destination, error=failure.getErrorMessage())
        return False

    def _attempt_ended(
        self,
        result: bool | Failure,
        message_id: int,
        inflight: set[int],
        finished: DeferredQueue[bool | None],
    ) -> None:
        inflight.discard(message_id)
        self._attempts -= 1
        finished.put(result is True)

    async def _attempt(self, destination: str, message: queue.QueuedMessage) -> bool:
        """Try one message; True when the next one may follow at once."""
        if self._clock.seconds() >= message.created + self._horizon:
            reason = message.last_error or "no attempt succeeded"
            await self._fail(
                message,
                [
                    (rid, address, EXPIRED, f"not delivered within {span(self._horizon)}: {reason}")
                    for rid, address in message.recipients
                ],
                destination,
            )
            return True
        try:
            results = await self._transfer(destination, message)
        except Exception as exc:
            await self._postpone(
                destination,
                message,
                [rid for rid, _ in message.recipients],
                await self._reason(destination, exc),
            )
            return False
        delivered = [rid for rid, address in message.recipients if results[address].ok]
        failed = [
            (rid, address, status_of(reply.code, reply.text), str(reply))
            for rid, address in message.recipients
            if (reply := results[address]).permanent
        ]
        later = [
            rid
            for rid, address in message.recipients
            if not results[address].ok and not results[address].permanent
        ]
        if delivered:
            log.info(
                "delivery.delivered",
                destination=destination,
                message_id=message.message_id,
                recipients=len(delivered),
            )
            await self._remove(message.id, delivered)
        if failed:
            await self._fail(message, failed, destination)
        if later:
            errors = sorted({str(results[address]) for rid, address in message.recipients if rid in later})
            await self._postpone(destination, message, later, "; ".join(errors))
            return False
        return True

    async def _reason(self, destination: str, failure: Exception) -> str:
        """Why an attempt got no replies, in words: the router's view first, then what happened."""
        if isinstance(failure, CancelledError):
            return "attempt abandoned: the node reappeared"
        address = ipaddress.IPv6Address(destination)
        happened = describe_failure(failure, address)
        try:
            cause = await self._diagnose(address)
        except Exception as exc:  # a diagnosis is a nicety: never let it stop the queue
            log.error("delivery.diagnosis_failed", destination=destination, error=str(exc))
            cause = None
        return happened if cause is None or cause == happened else f"{cause} ({happened})"

    async def _transfer(self, destination: str, message: queue.QueuedMessage) -> dict[str, Reply]:
        """One SMTP transaction, cancellable through :meth:`retry_now` while it runs."""
        addresses = [address for _, address in message.recipients]
        sending: Deferred[dict[str, Reply]] = ensureDeferred(
            self._send(
                ipaddress.IPv6Address(destination), message.sender, addresses, message.body, message.dsn
            )
        )
        attempts = self._sending.setdefault(destination, set())
        attempts.add(sending)
        try:
            return await sending
        finally:
            attempts.discard(sending)
            if not attempts and self._sending.get(destination) is attempts:
                del self._sending[destination]

    async def _fail(
        self, message: queue.QueuedMessage, failed: list[tuple[int, str, str, str]], destination: str
    ) -> None:
        """Bounce recipients that will never be delivered, then forget them."""
        remote = domain_for(ipaddress.IPv6Address(destination))
        failures = [
            RecipientFailure(address, status, reason, remote, message.dsn.notify(address).orcpt)
            for _, address, status, reason in failed
        ]
        log.warning(
            "delivery.failed",
            destination=destination,
            message_id=message.message_id,
            failures=[f.diagnostic for f in failures],
        )
        told = [f for f in failures if message.dsn.notify(f.recipient).wants(FAILURE)]
        if told:
            await self._report(message, told, FAILED)
        await self._remove(message.id, [rid for rid, *_ in failed])

    async def _postpone(
        self, destination: str, message: queue.QueuedMessage, recipient_ids: list[int], error: str
    ) -> None:
        """Schedule the next try (never past the horizon); warn the sender once if it is late."""
        now = self._clock.seconds()
        delay = backoff(message.attempts, self._retry_initial, self._retry_max, self._jitter())
        when = min(now + delay, message.created + self._horizon)
        log.info(
            "delivery.deferred", message_id=message.message_id, error=error, retry_in=round(when - now, 1)
        )
        await self._store.run(queue.postpone, recipient_ids, error, when)
        if self._delay_warning and not message.warned and now >= message.created + self._delay_warning:
            remote = domain_for(ipaddress.IPv6Address(destination))
            reply = _REPLY.match(error)
            status = status_of(int(reply.group(1)), reply.group(2)) if reply else "4.4.1"
            delayed = [
                RecipientFailure(address, status, error, remote, message.dsn.notify(address).orcpt)
                for rid, address in message.recipients
                if rid in recipient_ids and message.dsn.notify(address).wants(DELAY)
            ]
            if delayed:
                await self._report(message, delayed, DELAYED)
            await self._store.run(queue.mark_warned, recipient_ids)
