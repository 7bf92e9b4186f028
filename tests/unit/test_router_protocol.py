"""AdminProtocol on the wire: framing, FIFO with one request in flight, errors, endpoints."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from typing import Any, TypeVar

import pytest
from router_samples import (
    V047_PEERS,
    V047_SELF,
    V047_SESSIONS,
    V047_TUN,
    V047_UNKNOWN,
    V0512_PEERS,
    V0512_SELF,
    V0512_SESSIONS,
    V0512_TUN,
    V0512_TUN_DISABLED,
    V0512_UNKNOWN,
)
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ygbridge.errors import (
    ConfigError,
    RouterConnectionLost,
    RouterReplyError,
    RouterRequestError,
    RouterTimeout,
)
from ygbridge.router.protocol import REQUEST_TIMEOUT, AdminProtocol, admin_endpoint
from ygbridge.router.state import TunState

T = TypeVar("T")


def connected() -> tuple[AdminProtocol, StringTransport, Clock]:
    clock = Clock()
    protocol = AdminProtocol(clock)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def sent(transport: StringTransport) -> list[dict[str, Any]]:
    """Every request written so far, decoded."""
    decoder, text, requests = json.JSONDecoder(), transport.value().decode(), []
    while text:
        request, end = decoder.raw_decode(text)
        requests.append(request)
        text = text[end:]
    return requests


def result(deferred: Deferred[T]) -> T:
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]  # type: ignore[no-any-return]


def test_request_is_one_json_object_with_keepalive_and_string_arguments() -> None:
    protocol, transport, _ = connected()
    protocol.request("getNodeInfo", key="ab" * 32)
    assert sent(transport) == [{"request": "getNodeInfo", "arguments": {"key": "ab" * 32}, "keepalive": True}]


@pytest.mark.parametrize("answer", [V047_SELF, V0512_SELF])
def test_pretty_printed_answer_split_at_every_boundary(answer: bytes) -> None:
    whole = json.loads(answer)["response"]
    for cut in range(1, len(answer)):
        protocol, _, _ = connected()
        reply = protocol.request("getSelf")
        protocol.dataReceived(answer[:cut])
        assert reply.called == (cut >= len(answer.rstrip()))  # complete before the last newline
        protocol.dataReceived(answer[cut:])
        assert result(reply) == whole


def test_answer_fed_byte_by_byte() -> None:
    protocol, _, _ = connected()
    reply = protocol.get_peers()
    for i in range(len(V0512_PEERS)):
        protocol.dataReceived(V0512_PEERS[i : i + 1])
    assert [peer.up for peer in result(reply)] == [False, True]


def test_utf8_character_split_between_chunks() -> None:
    protocol, _, _ = connected()
    reply = protocol.request("getNodeInfo")
    answer = '{"status": "success", "request": null, "response": {"name": "nœud"}}'.encode()
    cut = answer.index("œ".encode()) + 1
    protocol.dataReceived(answer[:cut])
    protocol.dataReceived(answer[cut:])
    assert result(reply) == {"name": "nœud"}


def test_fifo_one_request_in_flight() -> None:
    protocol, transport, _ = connected()
    replies = [protocol.request(name) for name in ("getSelf", "getPeers", "getSessions")]
    assert [r["request"] for r in sent(transport)] == ["getSelf"]
    protocol.dataReceived(V047_SELF)
    assert [r["request"] for r in sent(transport)] == ["getSelf", "getPeers"]
    assert result(replies[0])["address"] == "200:dc1e:349b:33a7:b639:5a9:d652:c961"
    assert not replies[1].called
    protocol.dataReceived(V047_PEERS)
    assert [r["request"] for r in sent(transport)] == ["getSelf", "getPeers", "getSessions"]
    protocol.dataReceived(V047_SESSIONS)
    assert "peers" in result(replies[1]) and "sessions" in result(replies[2])


def test_several_answers_in_one_chunk() -> None:
    protocol, transport, _ = connected()
    identity, tun, sessions = protocol.get_self(), protocol.get_tun(), protocol.get_sessions()
    protocol.dataReceived(V0512_SELF + V0512_TUN + V0512_SESSIONS)
    assert [r["request"] for r in sent(transport)] == ["getSelf", "getTun", "getSessions"]
    assert result(identity).build_version == "0.5.12"
    assert result(tun) == TunState(True, "tun0", 65535)
    assert len(result(sessions)) == 1


def test_request_made_from_a_callback_keeps_its_place_in_the_queue() -> None:
    protocol, transport, _ = connected()
    later: list[Deferred[Any]] = []
    first = protocol.request("getSelf")
    first.addCallback(lambda _: later.append(protocol.request("getSessions")))
    protocol.request("getPeers")
    protocol.dataReceived(V047_SELF)
    assert [r["request"] for r in sent(transport)] == ["getSelf", "getPeers"]
    protocol.dataReceived(V047_PEERS + V047_SESSIONS)
    assert [r["request"] for r in sent(transport)] == ["getSelf", "getPeers", "getSessions"]
    assert "sessions" in result(later[0])


@pytest.mark.parametrize(
    ("name", "answer"),
    [("getSelf", V047_SELF), ("getSelf", V0512_SELF), ("getTun", V047_TUN), ("getTun", V0512_TUN)],
)
def test_both_envelope_shapes(name: str, answer: bytes) -> None:
    """0.4.7 echoes ``"request": null``; 0.5 echoes the request as sent (here in lower case)."""
    protocol, _, _ = connected()
    reply = protocol.request(name)
    protocol.dataReceived(answer)
    assert result(reply) == json.loads(answer)["response"]


@pytest.mark.parametrize("answer", [V047_UNKNOWN, V0512_UNKNOWN])
def test_error_status_fails_the_request_with_the_routers_message(answer: bytes) -> None:
    protocol, _, _ = connected()
    reply = protocol.request("nosuch")
    follower = protocol.get_tun()
    protocol.dataReceived(answer)
    with pytest.raises(RouterRequestError) as caught:
        result(reply)
    assert caught.value.request == "nosuch"
    assert "unknown action 'nosuch'" in caught.value.message.lower()
    assert "nosuch" in str(caught.value)
    protocol.dataReceived(V047_TUN)  # the connection is still usable
    assert result(follower).enabled


def test_status_and_message_compared_without_case() -> None:
    protocol, _, _ = connected()
    ok = protocol.request("getTun")
    protocol.dataReceived(b'{"status": "SUCCESS", "request": null, "response": {"enabled": false}}')
    assert result(ok) == {"enabled": False}
    refused = protocol.request("addPeer", uri="tcp://[::1]:1")
    protocol.dataReceived(b'{"status": "Error", "error": "unknown action \'addpeer\'", "request": null}')
    with pytest.raises(RouterRequestError, match="(?i)unknown action"):
        result(refused)


def test_error_without_text_still_says_something() -> None:
    protocol, _, _ = connected()
    reply = protocol.request("getSelf")
    protocol.dataReceived(b'{"error": ""}')  # what a panicking 0.4 handler sends
    with pytest.raises(RouterRequestError, match="no reason given"):
        result(reply)


def test_connection_lost_fails_every_pending_request() -> None:
    protocol, _, _ = connected()
    closed = protocol.when_closed()
    replies = [protocol.request("getSelf"), protocol.request("getPeers")]
    protocol.connectionLost(Failure(ConnectionError("gone")))
    for reply, name in zip(replies, ("getSelf", "getPeers"), strict=True):
        with pytest.raises(RouterConnectionLost, match=name):
            result(reply)
    assert closed.called and protocol.when_closed().called
    with pytest.raises(RouterConnectionLost):
        result(protocol.request("getTun"))


def test_unanswered_request_times_out_and_drops_the_connection() -> None:
    protocol, transport, clock = connected()
    stuck, queued = protocol.get_sessions(), protocol.get_peers()
    clock.advance(REQUEST_TIMEOUT - 1)
    assert not stuck.called
    clock.advance(1)
    with pytest.raises(RouterTimeout, match="getSessions"):
        result(stuck)
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionError("aborted")))
    with pytest.raises(RouterConnectionLost):
        result(queued)
    assert not clock.getDelayedCalls()


def test_answer_in_time_cancels_the_timer() -> None:
    protocol, _, clock = connected()
    protocol.get_tun()
    protocol.dataReceived(V0512_TUN_DISABLED)
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    "garbage",
    [
        b"HTTP/1.1 400 Bad Request\r\n",
        b"[1, 2]",
        b"\xff\xfe{",
        b'{"status": "success", "request": {"request": "getpeers"}}',
    ],
)
def test_garbage_or_mismatched_echo_fails_the_request_and_drops_the_connection(garbage: bytes) -> None:
    protocol, transport, _ = connected()
    reply = protocol.request("getSelf")
    protocol.dataReceived(garbage)
    with pytest.raises(RouterReplyError):
        result(reply)
    assert transport.disconnecting


def test_answer_nobody_asked_for_drops_the_connection() -> None:
    protocol, transport, _ = connected()
    protocol.dataReceived(V047_TUN)
    assert transport.disconnecting


def test_non_object_response_is_a_reply_error() -> None:
    protocol, _, _ = connected()
    reply = protocol.request("getSelf")
    protocol.dataReceived(b'{"status": "success", "request": null, "response": [1]}')
    with pytest.raises(RouterReplyError):
        result(reply)


def test_typed_helpers_read_both_lines() -> None:
    for answers, address in (
        ((V047_SELF, V047_TUN, V047_PEERS, V047_SESSIONS), "203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63"),
        ((V0512_SELF, V0512_TUN, V0512_PEERS, V0512_SESSIONS), "200:62db:8a6:e435:b47e:8987:740f:d80"),
    ):
        protocol, _, _ = connected()
        calls = protocol.get_self(), protocol.get_tun(), protocol.get_peers(), protocol.get_sessions()
        protocol.dataReceived(b"".join(answers))
        identity, tun, peers, sessions = (result(c) for c in calls)
        assert identity.subnet.prefixlen == 64 and tun.enabled
        assert [peer.up for peer in peers][-1] and all(peer.up == bool(peer.key) for peer in peers)
        assert sessions[0].address == IPv6Address(address)


def test_admin_endpoints() -> None:
    reactor = MemoryReactorClock()
    factory = Factory.forProtocol(lambda: AdminProtocol(reactor))
    admin_endpoint(reactor, "unix:///var/run/yggdrasil/yggdrasil.sock").connect(factory)
    assert reactor.unixClients[0][0] == "/var/run/yggdrasil/yggdrasil.sock"
    tcp = admin_endpoint(reactor, "tcp://localhost:9001")
    tcp.connect(factory)
    assert repr(tcp) == "<HostnameEndpoint localhost:9001>"
    assert reactor.tcpClients[0][1] == 9001
    assert repr(admin_endpoint(reactor, "TCP://[::1]:9002")) == "<HostnameEndpoint [::1]:9002>"


@pytest.mark.parametrize(
    "uri", ["/var/run/yggdrasil.sock", "unix://", "tcp://localhost", "udp://x:1", "tcp://:9"]
)
def test_bad_admin_uri_is_a_config_error(uri: str) -> None:
    with pytest.raises(ConfigError, match="yggdrasil"):
        admin_endpoint(MemoryReactorClock(), uri)
