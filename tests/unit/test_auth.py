"""Password hashing and login names."""

import ipaddress
from typing import Any

import nacl.pwhash
import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred

from ygbridge.addressing import domain_for
from ygbridge.auth import PasswordChecker, hash_password, login_name, needs_rehash, verify_password
from ygbridge.errors import UserError
from ygbridge.store import users
from ygbridge.testing.deferreds import failure_of, result_of
from ygbridge.testing.store import ImmediateDB, alice_database

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
OTHER = ipaddress.IPv6Address("207:c9a6:2274:54f4:63df:eb39:2d22:3d1")


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith(b"$argon2id$")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "Correct horse")
    assert not verify_password(b"not a hash", "correct horse")


@pytest.mark.parametrize("login", ["alice", "Alice", f"alice@{domain_for(NODE)}", f"alice@[IPv6:{NODE}]"])
def test_login_by_name_or_full_address(login: str) -> None:
    assert login_name(login, NODE) == "alice"


@pytest.mark.parametrize("login", [f"alice@{domain_for(OTHER)}", "al ice", ""])
def test_login_refused_for_other_nodes_and_bad_names(login: str) -> None:
    with pytest.raises(UserError):
        login_name(login, NODE)


# PasswordChecker: dummy verification for unknown users, rehash (the LoginGate bounds the checks)


class Pool:
    """A thread pool that runs work when told to (``run``), or at once (``immediate``)."""

    def __init__(self, immediate: bool = True) -> None:
        self.immediate = immediate
        self.queued: list[tuple[Any, Any, tuple[Any, ...]]] = []
        self.calls: list[str] = []

    def callInThreadWithCallback(self, on_result: Any, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(fn.__name__)
        self.queued.append((on_result, fn, args))
        if self.immediate:
            self.run()

    def run(self) -> None:
        while self.queued:
            on_result, fn, args = self.queued.pop(0)
            on_result(True, fn(*args))


class Reactor:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def getThreadPool(self) -> Pool:
        return self.pool

    def callFromThread(self, fn: Any, *args: Any) -> None:
        fn(*args)


db = pytest.fixture(alice_database, name="db")


def check(checker: PasswordChecker, user: str, password: str) -> Deferred[bytes]:
    return checker.requestAvatarId(UsernamePassword(user.encode(), password.encode()))


def test_unknown_user_costs_a_verification_too(db: None) -> None:
    users.set_password("alice", hash_password("right"))
    pool = Pool()
    checker = PasswordChecker(Reactor(pool), ImmediateDB(), lambda: NODE)  # type: ignore[arg-type]
    assert result_of(check(checker, "alice", "right")) == b"alice"
    assert pool.calls == ["verify_password"]
    assert failure_of(check(checker, "nobody", "x")).check(UnauthorizedLogin)
    assert failure_of(check(checker, "nobody", "y")).check(UnauthorizedLogin)
    # one dummy hash, made once; a verification for each unknown user
    assert pool.calls[1:] == ["hash_password", "verify_password", "verify_password"]
    assert failure_of(check(checker, "alice", "wrong")).check(UnauthorizedLogin)


def test_an_older_hash_is_replaced_after_login(db: None) -> None:
    old = nacl.pwhash.argon2id.str(
        b"right", opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN, memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN
    )
    users.set_password("alice", old)
    assert needs_rehash(old)
    checker = PasswordChecker(Reactor(Pool()), ImmediateDB(), lambda: NODE)  # type: ignore[arg-type]
    assert result_of(check(checker, "alice", "right")) == b"alice"
    stored = users.password_hash("alice")
    assert stored is not None and not needs_rehash(stored) and verify_password(stored, "right")
