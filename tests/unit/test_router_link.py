"""RouterLink and read_node against a MemoryReactorClock: connecting, identity, outages, backoff."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from router_samples import (
    V047_PEERS,
    V047_SELF,
    V047_SESSIONS,
    V047_TUN,
    V047_TUN_DISABLED,
    V0512_PEERS,
    V0512_SELF,
    V0512_TUN,
    V0512_TUN_DISABLED,
)
from structlog.testing import capture_logs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from ygbridge.config import DEFAULT_ADMIN_ENDPOINTS
from ygbridge.errors import ConfigError, RouterConnectionLost, RouterError, RouterUnreachable, TunDisabled
from ygbridge.router.link import MAX_RETRY_DELAY, RouterLink, admin_endpoints, read_node
from ygbridge.router.state import NodeStatus
from ygbridge.testing.router import FakeRouter

T = TypeVar("T")
URIS = ["unix:///run/ygbr-test/a.sock", "unix:///run/ygbr-test/b.sock"]


def outcome(deferred: Deferred[T]) -> T | Failure | None:
    """The result or Failure a Deferred fired with, or None while it has not."""
    seen: list[Any] = []
    deferred.addBoth(seen.append)
    return seen[0] if seen else None


def started(uris: list[str] = URIS) -> tuple[RouterLink, FakeRouter, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    link = RouterLink(reactor, uris, clock=reactor)
    link.startService()
    return link, FakeRouter(reactor), reactor


def test_reads_identity_from_the_first_socket_that_answers() -> None:
    link, router, _ = started()
    waiting = link.when_identity()
    router.refuse()
    assert router.attempts == [URIS[0][7:], URIS[1][7:]]
    protocol, transport = router.accept()
    assert b'"getSelf"' in transport.value() and b"getTun" not in transport.value()
    with capture_logs() as logs:
        router.answer(protocol, transport, V0512_SELF, V0512_TUN)
    identity = outcome(waiting)
    assert link.identity is identity and str(identity.address) == "200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7"
    assert outcome(link.when_identity()) is identity
    assert logs == [
        {
            "event": "router.connected",
            "log_level": "info",
            "uri": URIS[1],
            "address": "200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7",
            "build_version": "0.5.12",
        }
    ]


def test_unreachable_at_start_is_logged_once_and_retried_with_backoff() -> None:
    link, router, reactor = started()
    waiting = link.when_identity()
    with capture_logs() as logs:
        router.refuse()
        router.refuse("Permission denied")
        failure = outcome(waiting)
        assert isinstance(failure, Failure) and failure.check(RouterUnreachable)
        message = failure.getErrorMessage()
        assert (
            f"{URIS[0]} (No such file or directory)" in message
            and f"{URIS[1]} (Permission denied)" in message
        )
        assert [e["event"] for e in logs] == ["router.unreachable"]
        assert logs[0]["uris"] == URIS and logs[0]["log_level"] == "error"

        delays = []
        for _ in range(8):
            delays.append(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
            reactor.advance(delays[-1])
            router.refuse()
            router.refuse()
        assert [e["event"] for e in logs] == ["router.unreachable"]  # once per outage
    assert delays[0] < 3 and delays[-1] > 10  # each delay has up to 1 s of jitter
    assert all(delay <= MAX_RETRY_DELAY + 1 for delay in delays)
    later = link.when_identity()
    reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
    protocol, transport = router.accept()
    router.answer(protocol, transport, V047_SELF, V047_TUN)
    assert str(outcome(later).address) == "200:dc1e:349b:33a7:b639:5a9:d652:c961"


def test_tun_disabled_fails_identity_and_drops_the_connection() -> None:
    link, router, reactor = started()
    waiting = link.when_identity()
    protocol, transport = router.accept()
    with capture_logs() as logs:
        router.answer(protocol, transport, V047_SELF, V047_TUN_DISABLED)
    failure = outcome(waiting)
    assert isinstance(failure, Failure) and failure.check(TunDisabled)
    assert "TUN" in failure.getErrorMessage() and URIS[0] in failure.getErrorMessage()
    assert link.identity is None
    assert transport.disconnecting
    assert [(e["event"], e["log_level"]) for e in logs] == [("router.tun_disabled", "error")]
    protocol.connectionLost(Failure(ConnectionDone()))
    assert reactor.getDelayedCalls(), "a retry is scheduled"


def test_drop_while_reading_identity_is_retried() -> None:
    """A disconnect before getSelf is answered: no ClientService state error, a clean retry."""
    link, router, reactor = started()
    waiting = link.when_identity()
    protocol, transport = router.accept()
    protocol.connectionLost(Failure(ConnectionDone()))
    failure = outcome(waiting)
    assert isinstance(failure, Failure) and failure.check(RouterConnectionLost)
    reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
    assert len(router.attempts) == 2
    protocol, transport = router.accept()
    router.answer(protocol, transport, V0512_SELF, V0512_TUN_DISABLED)
    assert link.identity is None


def test_drop_after_connecting_is_logged_and_reconnects_quickly() -> None:
    link, router, reactor = started()
    protocol, transport = router.accept()
    router.answer(protocol, transport, V047_SELF, V047_TUN)
    identity = link.identity
    with capture_logs() as logs:
        protocol.connectionLost(Failure(ConnectionDone()))
        assert [e["event"] for e in logs] == ["router.disconnected"]
        assert link.identity is identity  # the last known identity stays
        assert isinstance(outcome(link.peers()), Failure)
        (retry,) = reactor.getDelayedCalls()
        assert retry.getTime() - reactor.seconds() <= 2
        reactor.advance(2)
        protocol, transport = router.accept()
        router.answer(protocol, transport, V0512_SELF, V0512_TUN)
    assert [e["event"] for e in logs] == [
        "router.disconnected",
        "router.identity_changed",
        "router.connected",
    ]
    assert link.identity is not None and link.identity.build_version == "0.5.12"


def test_peers_and_sessions_over_the_current_connection() -> None:
    link, router, _ = started()
    failure = outcome(link.sessions())
    assert isinstance(failure, Failure) and failure.check(RouterError)
    protocol, transport = router.accept()
    router.answer(protocol, transport, V047_SELF, V047_TUN)
    peers, sessions = link.peers(), link.sessions()
    router.answer(protocol, transport, V047_PEERS, V047_SESSIONS)
    assert len(outcome(peers)) == 1 and len(outcome(sessions)) == 1


def test_stop_cancels_waiters_and_closes_quietly() -> None:
    link, router, _ = started()
    protocol, transport = router.accept()
    waiting = link.when_identity()
    with capture_logs() as logs:
        stopped = link.stopService()
        assert transport.disconnecting
        protocol.connectionLost(Failure(ConnectionDone()))
    failure = outcome(waiting)
    assert isinstance(failure, Failure) and failure.check(CancelledError)
    assert outcome(stopped) is None
    assert logs == []


def test_the_default_admin_sockets_are_tried_in_order() -> None:
    defaults = list(DEFAULT_ADMIN_ENDPOINTS)
    assert [uri for uri, _ in admin_endpoints(MemoryReactorClock(), defaults)] == defaults
    link, router, _ = started(defaults)
    assert router.attempts == ["/var/run/yggdrasil/yggdrasil.sock"]
    link.stopService()


def test_read_node_over_one_connection() -> None:
    reactor = MemoryReactorClock()
    router = FakeRouter(reactor)
    status = Deferred.fromCoroutine(read_node(reactor, URIS))
    router.refuse()
    protocol, transport = router.accept()
    router.answer(protocol, transport, V047_SELF, V047_TUN, V047_PEERS, V047_SESSIONS)
    node = outcome(status)
    assert isinstance(node, NodeStatus)
    assert node.tun.name == "tun0" and len(node.peers) == 1 and len(node.sessions) == 1
    assert transport.disconnecting


def test_read_node_does_not_ask_sessions_without_tun() -> None:
    reactor = MemoryReactorClock()
    router = FakeRouter(reactor)
    status = Deferred.fromCoroutine(read_node(reactor, URIS[:1]))
    protocol, transport = router.accept()
    router.answer(protocol, transport, V0512_SELF, V0512_TUN_DISABLED, V0512_PEERS)
    node = outcome(status)
    assert isinstance(node, NodeStatus) and not node.tun.enabled and node.sessions == ()
    assert b"getSessions" not in transport.value() and transport.disconnecting


def test_read_node_names_every_uri_when_none_answers() -> None:
    reactor = MemoryReactorClock()
    router = FakeRouter(reactor)
    status = Deferred.fromCoroutine(read_node(reactor, URIS))
    router.refuse()
    router.refuse("Connection refused")
    failure = outcome(status)
    assert isinstance(failure, Failure) and failure.check(RouterUnreachable)
    assert failure.value.uris == tuple(URIS)
    assert all(uri in failure.getErrorMessage() for uri in URIS)


def test_read_node_closes_the_connection_when_a_request_fails() -> None:
    reactor = MemoryReactorClock()
    router = FakeRouter(reactor)
    status = Deferred.fromCoroutine(read_node(reactor, URIS[:1]))
    protocol, transport = router.accept()
    router.answer(protocol, transport, b'{"status": "error", "error": "busy", "request": null}')
    failure = outcome(status)
    assert isinstance(failure, Failure) and failure.check(RouterError)
    assert transport.disconnecting


def test_bad_uri_is_reported_before_starting() -> None:
    with pytest.raises(ConfigError, match="http://localhost:9001"):
        RouterLink(MemoryReactorClock(), ["http://localhost:9001"], clock=MemoryReactorClock())
