"""Which user names have an account on this node, as the RCPT checks of both SMTP ports ask it:
a "yes" is remembered for a few seconds, so that a recipient is not checked again on the one DB
thread, behind the synced commits queued there, for every message.

Accounts are added and deleted by the ``ygbridge user`` command, another process that tells the
service nothing. So a remembered "yes" is trusted for at most ``ttl`` seconds after the lookup
that gave it (``[delivery] user_cache``), and a "no" is never remembered: a new user gets mail at
once, a deleted one is refused again at most ``ttl`` seconds later. Mail accepted for a user
deleted in that window is bounced to its sender by the Intake, which also :meth:`forgets
<KnownUsers.forget>` the name. At most ``size`` names are kept, the least recently asked for
leaving first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from twisted.internet.interfaces import IReactorTime

#: Names remembered at most (a node with more users looks the others up each time).
KEPT = 1024


class KnownUsers:
    """Existing users as ``lookup`` (names -> those that exist) finds them, remembered ``ttl``
    seconds on ``clock`` (0: not at all)."""

    def __init__(
        self,
        clock: IReactorTime,
        lookup: Callable[[list[str]], Awaitable[set[str]]],
        ttl: float,
        size: int = KEPT,
    ) -> None:
        self._clock = clock
        self._lookup = lookup
        self._ttl = ttl
        self._size = size
        self._until: OrderedDict[str, float] = OrderedDict()  # name -> when it must be looked up again

    def __len__(self) -> int:
        """How many names are remembered (expired ones until they are asked for or pushed out)."""
        return len(self._until)

    async def existing(self, names: list[str]) -> set[str]:
        """Which of ``names`` are users here; only the names not remembered are looked up."""
        now = self._clock.seconds()
        known, unknown = set(), []
        for name in names:
            until = self._until.get(name)
            if until is not None and now < until:
                self._until.move_to_end(name)
                known.add(name)
            else:
                self._until.pop(name, None)
                unknown.append(name)
        if not unknown:
            return known
        found = await self._lookup(unknown)
        if self._ttl > 0:
            for name in found:  # counted from before the lookup: never trusted longer than ttl
                self._until[name] = now + self._ttl
                self._until.move_to_end(name)
            while len(self._until) > self._size:
                self._until.popitem(last=False)
        return known | found

    def forget(self, name: str) -> None:
        """``name`` turned out not to exist (any more): look it up next time."""
        self._until.pop(name, None)
