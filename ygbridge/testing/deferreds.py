"""The outcome of a Deferred that has already fired, for tests that run without a reactor."""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


def result_of(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has already fired successfully."""
    results: list[T] = []
    deferred.addCallback(results.append)
    assert results, f"{deferred!r} has not fired, or failed"
    return results[0]


def failure_of(deferred: Deferred[object]) -> Failure:
    """The failure of a Deferred that has already failed (now handled)."""
    failures: list[Failure] = []
    deferred.addErrback(failures.append)
    assert failures, f"{deferred!r} has not failed"
    return failures[0]
