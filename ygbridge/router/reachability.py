"""Noticing nodes that become reachable: the admin API has no events, so peers and sessions
are polled, and every address that was not there at the previous poll is announced."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ygbridge.errors import RouterError
from ygbridge.router.link import RouterLink

log = structlog.get_logger(__name__)


class ReachabilityWatcher(TimerService):
    """Calls ``appeared(address)`` for each peer that came up and each new session.

    While the router cannot be asked, nothing is known: on reconnection every current peer
    and session counts as new.
    """

    def __init__(
        self, link: RouterLink, clock: IReactorTime, interval: float, appeared: Callable[[str], None]
    ) -> None:
        super().__init__(interval, self._poll)
        self.clock = clock
        self._link = link
        self._appeared = appeared
        self._peers: set[str] = set()
        self._sessions: set[str] = set()

    def _poll(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._read())

    async def _read(self) -> None:
        try:
            peers = {p.address.compressed for p in await self._link.peers() if p.up and p.address}
            sessions = {s.address.compressed for s in await self._link.sessions()}
        except RouterError:
            self._peers, self._sessions = set(), set()
            return
        except Exception as exc:  # the poll must survive anything
            log.error("router.poll_failed", error=str(exc))
            return
        new = (peers - self._peers) | (sessions - self._sessions)
        self._peers, self._sessions = peers, sessions
        for address in sorted(new):
            self._appeared(address)
