"""The login gate: delays that grow, locks per source and per user, loopback never locked out."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from ygbridge.errors import LoginThrottled
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate, failure_delay, source_key

LAN = "192.168.1.20"
OTHER_LAN = "192.168.1.21"
LIMITS = Limits(
    login_failures_per_source=5,
    login_failures_per_user=8,
    login_lockout=900.0,
    login_tracked=100,
    password_checks=100,
)


class IAvatar(Interface):
    pass


@implementer(IRealm)
class Realm:
    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> tuple[Any, ...]:
        return IAvatar, avatarId, lambda: None


class Checker(InMemoryUsernamePasswordDatabaseDontUse):
    """Counts how often a password was really checked."""

    checked = 0

    def requestAvatarId(self, credentials: Any) -> Any:
        self.checked += 1
        return super().requestAvatarId(credentials)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def checker() -> Checker:
    return Checker(alice=b"right", bob=b"bobs")


@pytest.fixture
def gate(clock: Clock) -> LoginGate:
    return LoginGate(clock, LIMITS)


class Attempt:
    """One login through the gate, and when it was answered."""

    def __init__(
        self, gate: LoginGate, checker: Checker, clock: Clock, source: str, user: str, pw: str
    ) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.result: object = None
        self.answered_at: float | None = None
        portal = Portal(Realm(), [checker])
        done: Deferred[Any] = gate.login(
            portal, source, UsernamePassword(user.encode(), pw.encode()), IAvatar
        )
        done.addBoth(self._answered)

    def _answered(self, result: object) -> None:
        self.result, self.answered_at = result, self.clock.seconds()

    def wait(self) -> Attempt:
        """Advance the clock until the answer came (bounded)."""
        for _ in range(1000):
            if self.answered_at is not None:
                return self
            self.clock.advance(0.25)
        raise AssertionError("never answered")

    @property
    def delay(self) -> float:
        assert self.answered_at is not None
        return self.answered_at - self.started

    def failed_with(self, error: type[Exception]) -> bool:
        return isinstance(self.result, Failure) and self.result.check(error) is not None


def attempt(
    gate: LoginGate, checker: Checker, clock: Clock, source: str = LAN, user: str = "alice", pw: str = "wrong"
) -> Attempt:
    return Attempt(gate, checker, clock, source, user, pw).wait()


def test_delays_grow_then_the_source_is_locked_without_checking(
    gate: LoginGate, checker: Checker, clock: Clock
) -> None:
    delays = []
    for _ in range(LIMITS.login_failures_per_source):
        failed = attempt(gate, checker, clock)
        assert failed.failed_with(UnauthorizedLogin)
        delays.append(failed.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    checked = checker.checked
    locked = attempt(gate, checker, clock, pw="right")
    assert locked.failed_with(LoginThrottled) and locked.delay == 0
    assert checker.checked == checked  # the password was not even looked at
    # another LAN address is not locked, nor is the owner on loopback
    assert attempt(gate, checker, clock, source=OTHER_LAN, pw="right").result[1] == b"alice"
    assert attempt(gate, checker, clock, source="127.0.0.1", pw="right").result[1] == b"alice"


def test_lock_and_counters_expire(gate: LoginGate, checker: Checker, clock: Clock) -> None:
    for _ in range(LIMITS.login_failures_per_source):
        attempt(gate, checker, clock)
    assert attempt(gate, checker, clock, pw="right").failed_with(LoginThrottled)
    clock.advance(LIMITS.login_lockout)
    assert attempt(gate, checker, clock, pw="right").result[1] == b"alice"
    assert attempt(gate, checker, clock).delay == 0.5  # counted afresh


def test_user_locked_for_every_source_but_loopback(gate: LoginGate, checker: Checker, clock: Clock) -> None:
    sources = [f"10.0.{n}.1" for n in range(LIMITS.login_failures_per_user)]
    for n, source in enumerate(sources):
        failed = attempt(gate, checker, clock, source=source)
        assert failed.failed_with(UnauthorizedLogin)
        assert failed.delay == failure_delay(n + 1, LIMITS)  # the user's failures count too
    assert attempt(gate, checker, clock, source="10.9.9.9", pw="right").failed_with(LoginThrottled)
    assert attempt(gate, checker, clock, source="10.9.9.9", user="bob", pw="bobs").result[1] == b"bob"
    owner = attempt(gate, checker, clock, source="::1", pw="right")
    assert owner.result[1] == b"alice" and owner.delay == 0


def test_loopback_is_delayed_by_its_own_failures_only(
    gate: LoginGate, checker: Checker, clock: Clock
) -> None:
    for _ in range(LIMITS.login_failures_per_user):
        attempt(gate, checker, clock, source=f"10.1.0.{_}")
    first = attempt(gate, checker, clock, source="127.0.0.1")
    assert first.failed_with(UnauthorizedLogin) and first.delay == 0.5
    for _ in range(20):
        again = attempt(gate, checker, clock, source="127.0.0.1")
        assert again.failed_with(UnauthorizedLogin) and again.delay <= LIMITS.login_delay_max  # never locked
    assert attempt(gate, checker, clock, source="127.0.0.1", pw="right").result[1] == b"alice"


class SlowChecker:
    """Each check waits until the test answers it: (user name, its Deferred) in ``pending``."""

    credentialInterfaces = Checker.credentialInterfaces

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, Deferred[bytes]]] = []

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes]:
        self.pending.append((credentials.username, Deferred()))
        return self.pending[-1][1]


def test_logins_being_checked_count_against_the_source(gate: LoginGate, clock: Clock) -> None:
    """Parallel guesses cannot overtake the lock: pending checks count as failures to come."""
    checker = SlowChecker()
    portal = Portal(Realm(), [checker])
    results: list[object] = []
    for _ in range(LIMITS.login_failures_per_source + 3):
        gate.login(portal, LAN, UsernamePassword(b"alice", b"guess"), IAvatar).addBoth(results.append)
    pending = [deferred for _, deferred in checker.pending]
    assert len(pending) == LIMITS.login_failures_per_source
    assert all(isinstance(r, Failure) and r.check(LoginThrottled) for r in results)
    for deferred in pending:
        deferred.errback(UnauthorizedLogin())
    clock.advance(60)
    assert len(results) == LIMITS.login_failures_per_source + 3


def test_password_checks_are_bounded_and_loopback_goes_first(clock: Clock) -> None:
    """2 checks run, 3 wait, the rest are refused at once; the owner on loopback waits too (never
    refused) but ahead of every other login waiting."""
    gate = LoginGate(clock, Limits(password_checks=2, password_checks_waiting=3))
    checker = SlowChecker()
    portal = Portal(Realm(), [checker])
    results: list[object] = []
    for n in range(10):
        login = UsernamePassword(b"guess%d" % n, b"wrong")
        gate.login(portal, f"10.3.{n}.1", login, IAvatar).addBoth(results.append)
    assert [user for user, _ in checker.pending] == [b"guess0", b"guess1"]  # running
    assert len(results) == 5 and all(isinstance(r, Failure) and r.check(LoginThrottled) for r in results)
    owner: list[object] = []
    gate.login(portal, "127.0.0.1", UsernamePassword(b"alice", b"right"), IAvatar).addBoth(owner.append)
    checker.pending[0][1].errback(UnauthorizedLogin())
    assert [user for user, _ in checker.pending][2:] == [b"alice"]  # before guess2..4
    checker.pending[2][1].callback(b"alice")
    assert owner and not isinstance(owner[0], Failure)
    for at in (1, 3, 4, 5):
        checker.pending[at][1].errback(UnauthorizedLogin())
    assert [user for user, _ in checker.pending] == [b"guess%d" % n for n in (0, 1)] + [b"alice"] + [
        b"guess%d" % n for n in (2, 3, 4)
    ]
    clock.advance(60)
    assert len(results) == 10


def test_memory_is_bounded_and_sources_grouped(clock: Clock, checker: Checker) -> None:
    gate = LoginGate(clock, Limits(login_tracked=10))
    for n in range(50):
        attempt(gate, checker, clock, source=f"10.2.{n}.1", user=f"user{n}")
    assert len(gate._sources) == len(gate._users) == 10
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff") == ("2001:db8::/64", False)
    assert source_key("::ffff:127.0.0.1") == source_key("UNIXAddress('/run/imap')") == ("local", True)


def test_success_clears_the_sources_failures_not_the_users(
    gate: LoginGate, checker: Checker, clock: Clock
) -> None:
    for _ in range(3):
        attempt(gate, checker, clock)
    assert attempt(gate, checker, clock, user="bob", pw="bobs").result[1] == b"bob"
    assert attempt(gate, checker, clock, user="carol").delay == 0.5  # the source starts afresh
    alices_fourth = failure_delay(4, LIMITS)
    assert attempt(gate, checker, clock, source=OTHER_LAN).delay == alices_fourth


def test_failure_delays_double_from_login_delay_to_login_delay_max() -> None:
    limits = Limits(login_delay=1.5, login_delay_max=5.0)
    assert [failure_delay(n, limits) for n in range(5)] == [0.0, 1.5, 3.0, 5.0, 5.0]
    assert failure_delay(1000, limits) == 5.0
