"""Parsing getSelf/getTun/getPeers/getSessions answers of yggdrasil 0.4.7 and 0.5.12."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from router_samples import (
    V047_PEERS,
    V047_SELF,
    V047_SESSIONS,
    V047_TUN,
    V047_TUN_DISABLED,
    V0512_PEERS,
    V0512_SELF,
    V0512_SESSIONS,
    V0512_TUN,
    V0512_TUN_DISABLED,
    response,
)

from ygbridge.addressing import address_for_key
from ygbridge.errors import RouterReplyError
from ygbridge.router.state import (
    NodeIdentity,
    Peer,
    Session,
    TunState,
    parse_peers,
    parse_self,
    parse_sessions,
    parse_tun,
    why_unreachable,
)

KEY_047 = bytes.fromhex("91f0e5b2662c24e37d2b14d69b4f57c8c438a3bb1f22dbe158731fed6451c408")
KEY_0512 = bytes.fromhex("99098b4ac8f782f105094bba691c62dee5e63d1ab7b2dfe24c7c31349b4b4ab4")


def test_self_047_with_coords_and_unknown_build() -> None:
    assert parse_self(response(V047_SELF)) == NodeIdentity(
        key=KEY_047,
        address=IPv6Address("200:dc1e:349b:33a7:b639:5a9:d652:c961"),
        subnet=IPv6Network("300:dc1e:349b:33a7::/64"),
        build_name="unknown",
        build_version="unknown",
        api="0.4",
    )
    assert (
        parse_self(response(V047_SELF)).describe_router() == "yggdrasil (version not reported; admin API 0.4)"
    )


def test_self_0512_with_routing_entries() -> None:
    identity = parse_self(response(V0512_SELF))
    assert identity.key == KEY_0512
    assert identity.address == IPv6Address("200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7")
    assert identity.subnet == IPv6Network("300:cdec:e96a:6e10::/64")
    assert (identity.build_name, identity.build_version) == ("yggdrasil", "0.5.12")
    assert identity.api == "0.5" and identity.describe_router() == "yggdrasil 0.5.12"


@pytest.mark.parametrize("answer", [V047_SELF, V0512_SELF])
def test_router_address_is_the_one_derived_from_its_key(answer: bytes) -> None:
    identity = parse_self(response(answer))
    assert address_for_key(identity.key) == identity.address


def test_self_without_build_fields_says_unknown() -> None:
    answer = dict(response(V0512_SELF))
    del answer["build_name"], answer["build_version"]
    identity = parse_self(answer)
    assert (identity.build_name, identity.build_version) == ("unknown", "unknown")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (V047_TUN, TunState(True, "tun0", 53049)),
        (V0512_TUN, TunState(True, "tun0", 65535)),
        (V047_TUN_DISABLED, TunState(False, None, None)),
        (V0512_TUN_DISABLED, TunState(False, None, None)),
    ],
)
def test_tun(answer: bytes, expected: TunState) -> None:
    assert parse_tun(response(answer)) == expected


def test_peers_047_have_no_up_field_and_are_all_up() -> None:
    assert parse_peers(response(V047_PEERS)) == (
        Peer(
            key=bytes.fromhex("1a44c7a1a530c256684f5de42239cf071816f00c4d18657ceaa0c752300d18e4"),
            address=IPv6Address("203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63"),
            up=True,
            remote="tcp://127.0.0.1:38190",
        ),
    )


def test_peers_0512_keep_down_peers_with_the_routers_error() -> None:
    assert parse_peers(response(V0512_PEERS)) == (
        Peer(
            key=None,
            address=None,
            up=False,
            remote="tcp://127.0.0.1:1",
            last_error="dial tcp 127.0.0.1:1: connect: connection refused",
        ),
        Peer(
            key=KEY_0512,
            address=IPv6Address("200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7"),
            up=True,
            remote="tcp://127.0.0.1:12346",
        ),
    )


def test_peer_known_but_not_up_is_kept_with_up_false() -> None:
    entry = {"up": False, "key": KEY_0512.hex(), "address": "200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7"}
    (peer,) = parse_peers({"peers": [entry]})
    assert peer.up is False and peer.remote is None


@pytest.mark.parametrize("peers", [[], None])
def test_no_peers(peers: object) -> None:
    assert parse_peers({"peers": peers}) == ()


def test_sessions_047() -> None:
    assert parse_sessions(response(V047_SESSIONS)) == (
        Session(
            key=bytes.fromhex("1a44c7a1a530c256684f5de42239cf071816f00c4d18657ceaa0c752300d18e4"),
            address=IPv6Address("203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63"),
            uptime=2.710994335,
        ),
    )


def test_sessions_0512() -> None:
    (session,) = parse_sessions(response(V0512_SESSIONS))
    assert session.address == IPv6Address("200:62db:8a6:e435:b47e:8987:740f:d80")
    assert address_for_key(session.key) == session.address
    assert session.uptime == pytest.approx(2.687676764)


def test_no_sessions() -> None:
    assert parse_sessions({"sessions": []}) == ()


@pytest.mark.parametrize(
    "change",
    [
        {"key": None},
        {"key": "91f0"},
        {"key": "not hex"},
        {"address": "not an address"},
        {"subnet": None},
    ],
)
def test_unreadable_self_is_a_reply_error(change: dict[str, object]) -> None:
    answer = {**response(V047_SELF), **change}
    with pytest.raises(RouterReplyError, match="getSelf"):
        parse_self(answer)


def test_missing_fields_are_reply_errors_naming_the_request() -> None:
    with pytest.raises(RouterReplyError, match="getTun"):
        parse_tun({})
    with pytest.raises(RouterReplyError, match="getPeers"):
        parse_peers({"peers": [{"key": KEY_047.hex()}]})
    with pytest.raises(RouterReplyError, match="getSessions"):
        parse_sessions({})


def test_why_unreachable_prefers_the_routers_own_reason() -> None:
    node = IPv6Address("200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7")
    down = Peer(None, None, False, "tcp://10.0.0.1:1", "incompatible version")
    up = Peer(KEY_0512, node, True, "tcp://10.0.0.2:1")
    assert why_unreachable(node, (down, down), ()) == "peer down: incompatible version"
    assert why_unreachable(node, (), ()) == "peer down: this router has no peer up"
    other = IPv6Address("203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63")
    assert why_unreachable(other, (down, up), ()) == f"no route to node {other}"
    assert why_unreachable(node, (up,), (Session(KEY_0512, node, 1.0),)) is None
