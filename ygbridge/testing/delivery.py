"""A scripted peer node for the queue runner: each delivery attempt gets the next outcome."""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from ygbridge.notify import NO_REQUEST, DsnRequest
from ygbridge.outcome import Reply

#: An outcome: the attempt never ends by itself (its packets are dropped; only a timeout ends it).
HANG = object()


class FakePeer:
    """Answers each send with the next scripted outcome: a Reply for every recipient, a dict of
    Replies by recipient, an exception, a Deferred the test fires, or :data:`HANG`."""

    def __init__(self, *outcomes: object) -> None:
        self.clock: IReactorTime | None = None
        self.attempt_times: list[float] = []
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.dsn: list[DsnRequest] = []

    def send(
        self,
        destination: ipaddress.IPv6Address,
        sender: str,
        recipients: list[str],
        body: bytes,
        dsn: DsnRequest = NO_REQUEST,
    ) -> Deferred[dict[str, Reply]]:
        """Record the attempt (and its time on :attr:`clock`); the next outcome."""
        self.dsn.append(dsn)
        self.sent.append((destination.compressed, recipients, body))
        self.attempt_times.append(self.clock.seconds() if self.clock else 0.0)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Deferred):
            return outcome
        if outcome is HANG:
            return Deferred()
        if isinstance(outcome, Exception):
            return fail(outcome)
        if isinstance(outcome, dict):
            return succeed(outcome)
        assert isinstance(outcome, Reply), f"not an outcome: {outcome!r}"
        return succeed(dict.fromkeys(recipients, outcome))
