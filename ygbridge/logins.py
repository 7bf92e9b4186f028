"""Where both client protocols log in: the portal behind one throttle shared by every port.

Failed logins are counted per source address (an IPv6 source by its /64) and per user; the answer
to a failure comes later the more failures there were (0.5 s, doubling, at most 4 s), and past a
limit logins from that source (or for that user) are refused for ``login_lockout`` without
checking the password (:class:`~ygbridge.errors.LoginThrottled`). Logins still being checked count
as failures to come, so parallel connections cannot guess past the limit. Loopback (and a UNIX
socket) is never locked out nor delayed by other sources' failures, so the owner can always log
in on the machine itself. A successful login clears its source's failures (not the user's), as
Dovecot's auth penalty does. Counters expire ``login_lockout`` after the last failure; at most
``login_tracked`` sources and as many user names are remembered, the least recently failed
forgotten first.

At most ``password_checks`` logins are checked at once (an argon2id verification holds 64 MiB)
and ``password_checks_waiting`` wait their turn, beyond which a login is refused at once;
loopback's turn comes before any other's, so that a crowd of guesses does not make the owner
wait behind it."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import structlog
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from ygbridge.errors import LoginThrottled
from ygbridge.limits import Limits

log = structlog.get_logger(__name__)

#: User names are remembered up to this length (a longer one cannot be a user anyway).
_NAME_LENGTH = 64


def failure_delay(failures: int, limits: Limits) -> float:
    """How long the answer to the ``failures``-th failure waits (0 for none): ``login_delay``,
    doubling with each further failure, at most ``login_delay_max``."""
    if failures <= 0:
        return 0.0
    return min(limits.login_delay * (1 << min(failures - 1, 16)), limits.login_delay_max)


def source_key(source: str) -> tuple[str, bool]:
    """What a client address is counted as (an IPv6 address by its /64), and whether it is loopback."""
    try:
        address = ipaddress.ip_address(source.split("%", 1)[0])
    except ValueError:
        return "local", True  # not an IP address: a UNIX socket, on this machine as loopback is
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "local", True
    if isinstance(address, ipaddress.IPv6Address):
        return ipaddress.IPv6Network((address, 64), strict=False).compressed, False
    return address.compressed, False


def user_key(credentials: ICredentials) -> str:
    """The user a login is for: the local part of the name given, lowercase."""
    name = getattr(credentials, "username", b"")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name).strip().lower().partition("@")[0][:_NAME_LENGTH]


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class _Counters:
    """Failures by key, forgotten ``expiry`` seconds after the last one (or the lock's end)."""

    def __init__(self, capacity: int, expiry: float) -> None:
        self._capacity = max(capacity, 1)
        self._expiry = expiry
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def get(self, key: str, now: float) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is not None and now >= max(entry.last + self._expiry, entry.locked_until):
            del self._entries[key]
            return None
        return entry

    def add(self, key: str, now: float) -> _Failures:
        """Count one failure for ``key`` (it becomes the most recent one)."""
        entry = self.get(key, now) or _Failures()
        entry.count += 1
        entry.last = now
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return entry

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class _Turns:
    """At most ``running`` checks at once; the others wait, loopback's ahead of the rest, and
    beyond ``waiting`` others a login is refused at once (loopback always waits its turn)."""

    def __init__(self, running: int, waiting: int) -> None:
        self._free = max(running, 1)
        self._waiting = waiting
        self._local: deque[Deferred[None]] = deque()
        self._others: deque[Deferred[None]] = deque()

    def take(self, loopback: bool) -> Deferred[None]:
        """Fires when a check may start (its end must be told to :meth:`done`)."""
        if self._free:
            self._free -= 1
            return succeed(None)
        if not loopback and len(self._others) >= self._waiting:
            return fail(LoginThrottled("too many logins at once: try again in a moment"))
        turn: Deferred[None] = Deferred()
        (self._local if loopback else self._others).append(turn)
        return turn

    def done(self) -> None:
        """A check ended: the next waiting one starts."""
        queue = self._local or self._others
        if queue:
            queue.popleft().callback(None)
        else:
            self._free += 1


class LoginGate:
    """One per node; ``login`` is what IMAP LOGIN/AUTHENTICATE and SMTP AUTH call."""

    def __init__(self, clock: IReactorTime, limits: Limits) -> None:
        self._clock = clock
        self._limits = limits
        self._sources = _Counters(limits.login_tracked, limits.login_lockout)
        self._users = _Counters(limits.login_tracked, limits.login_lockout)
        self._checking: dict[str, int] = {}  # logins being checked, by source key
        self._turns = _Turns(limits.password_checks, limits.password_checks_waiting)

    def login(
        self, portal: Portal, source: str, credentials: ICredentials, interface: Any, *others: Any
    ) -> Deferred[tuple[Any, Any, Any]]:
        """``portal.login`` for a client at ``source`` (its IP address, as text).

        Fails with UnauthorizedLogin for a wrong user or password, LoginThrottled while the
        source or the user is locked out. ``others``: further interfaces the avatar may have.
        """
        key, loopback = source_key(source)
        user = user_key(credentials)
        if not loopback:
            throttled = self._throttled(key, user)
            if throttled is not None:
                return fail(throttled)
        return Deferred.fromCoroutine(
            self._login(portal, key, loopback, user, credentials, interface, others)
        )

    def _throttled(self, key: str, user: str) -> LoginThrottled | None:
        now = self._clock.seconds()
        source = self._sources.get(key, now)
        failures = (source.count if source is not None else 0) + self._checking.get(key, 0)
        if failures >= self._limits.login_failures_per_source:
            return LoginThrottled("too many failed logins from this address: try again later")
        account = self._users.get(user, now)
        if account is not None and account.locked_until > now:
            return LoginThrottled("too many failed logins for this user: try again later")
        return None

    async def _login(
        self,
        portal: Portal,
        key: str,
        loopback: bool,
        user: str,
        credentials: ICredentials,
        interface: Any,
        others: tuple[Any, ...],
    ) -> tuple[Any, Any, Any]:
        self._checking[key] = self._checking.get(key, 0) + 1
        try:
            await self._turns.take(loopback)
            try:
                result: tuple[Any, Any, Any] = await maybeDeferred(
                    portal.login, credentials, None, interface, *others
                )
            finally:
                self._turns.done()
        except UnauthorizedLogin:
            self._release(key)
            await deferLater(self._clock, self._failed(key, loopback, user))
            raise
        except BaseException:
            self._release(key)
            raise
        self._release(key)
        self._sources.forget(key)  # a source that knows a password is not guessing
        return result

    def _release(self, key: str) -> None:
        left = self._checking.pop(key) - 1
        if left:
            self._checking[key] = left

    def _failed(self, key: str, loopback: bool, user: str) -> float:
        """Count a failure; how long its answer waits."""
        now = self._clock.seconds()
        source = self._sources.add(key, now)
        account = self._users.add(user, now)
        log.warning(
            "login.failed", user=user, source=key, source_failures=source.count, user_failures=account.count
        )
        limits = self._limits
        if not loopback and source.count == limits.login_failures_per_source:
            source.locked_until = now + limits.login_lockout
            log.warning(
                "login.source_locked", source=key, failures=source.count, seconds=limits.login_lockout
            )
        if account.count == limits.login_failures_per_user:
            account.locked_until = now + limits.login_lockout
            log.warning("login.user_locked", user=user, failures=account.count, seconds=limits.login_lockout)
        return failure_delay(source.count if loopback else max(source.count, account.count), limits)
