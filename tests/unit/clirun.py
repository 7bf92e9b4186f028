"""The ``ygbridge`` command run in the test process: on a clock instead of the reactor (which
runs once per process), with the router faked so that nothing waits for it."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge import cli
from ygbridge.errors import RouterError


async def router_away(reactor: object, config: object) -> None:
    """Stands in for ``cli._node`` while the router is not running."""
    raise RouterError("no router at unix:///nonexistent/ygbridge-test.sock")


def ygbridge(*argv: str) -> int:
    """The command's exit status; it must not wait for the reactor."""
    clock = Clock()
    clock.advance(time.time())
    statuses: list[int] = []
    Deferred.fromCoroutine(cli.run(clock, cli.parser().parse_args(argv))).addCallback(statuses.append)
    assert statuses, "the command waited for the reactor"
    return statuses[0]
