"""Peak memory of failed logins in parallel: what argon2 costs before authentication.

Makes a user in a temporary SQLite file, then sends N wrong-password logins at once, each from
its own LAN address (so that the throttle lets every one be checked), through the node's
LoginGate and PasswordChecker on a real reactor (its thread pool, the DB thread), and prints how
much the process's peak RSS grew. Works on older trees that have the gate too (PYTHONPATH=<tree>),
where the checker took the limits. Prints figures; asserts nothing.

    PYTHONPATH=. python bench/login_memory.py [--parallel 20]
"""

from __future__ import annotations

import argparse
import inspect
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, DeferredList
from zope.interface import Interface, implementer

from ygbridge.auth import PasswordChecker, hash_password
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.store.db import DBThread, connect
from ygbridge.store.users import add_user


@implementer(IRealm)
class NoRealm:
    """Never asked: every password is wrong."""

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        raise AssertionError("a wrong password logged in")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(reactor: Any, parallel: int, directory: Path) -> None:
    connect(f"sqlite:///{directory / 'bench.db'}", directory)
    add_user("alice", hash_password("right"), time.time())
    store = DBThread(reactor)
    store.startService()
    checker_arguments: list[Any] = [reactor, store, lambda: None]
    if "limits" in inspect.signature(PasswordChecker).parameters:  # the bound of older trees
        checker_arguments.append(Limits())
    checker = PasswordChecker(*checker_arguments)
    gate = LoginGate(reactor, Limits())
    portal = Portal(NoRealm(), [checker])
    before = peak_mib()
    started = time.monotonic()
    checks = [
        gate.login(
            portal, f"10.0.{n // 250}.{n % 250 + 1}", UsernamePassword(b"alice", b"wrong%d" % n), Interface
        )
        for n in range(parallel)
    ]
    results = await DeferredList(checks, consumeErrors=True)
    elapsed = time.monotonic() - started
    refused = sum(1 for ok, _ in results if not ok)
    print(f"{parallel} wrong passwords at once: {refused} refused in {elapsed:.2f} s")
    print(f"peak RSS before {before:.0f} MiB, after {peak_mib():.0f} MiB (+{peak_mib() - before:.0f} MiB)")
    await store.stopService()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        done = Deferred.fromCoroutine(run(global_reactor, args.parallel, Path(directory)))
        done.addErrback(lambda failure: print(failure.getTraceback()))
        done.addBoth(lambda _: global_reactor.stop())
        global_reactor.run()


if __name__ == "__main__":
    main()
