"""The ``ygbridge`` command run in the test process: on a clock instead of the reactor (which
runs once per process), the router faked by the ``router_away`` fixture (conftest.py)."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge import cli


def ygbridge(*argv: str) -> int:
    """The command's exit status; it must not wait for the reactor."""
    clock = Clock()
    clock.advance(time.time())
    statuses: list[int] = []
    Deferred.fromCoroutine(cli.run(clock, cli.parser().parse_args(argv))).addCallback(statuses.append)
    assert statuses, "the command waited for the reactor"
    return statuses[0]
