"""Typed values read from yggdrasil admin socket answers (pure; 0.4.7 and 0.5.x field names).

Parse at the boundary: nothing past this module sees a raw answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any, TypeVar

from ygbridge.errors import RouterReplyError

Response = Mapping[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class NodeIdentity:
    """The local node as getSelf reports it."""

    key: bytes
    address: IPv6Address
    subnet: IPv6Network
    build_name: str
    build_version: str


@dataclass(frozen=True)
class TunState:
    """The router's TUN interface; without it no packet reaches the mesh."""

    enabled: bool
    name: str | None
    mtu: int | None


@dataclass(frozen=True)
class Peer:
    """A peer link; 0.5 may list a known peer whose link is not up."""

    key: bytes
    address: IPv6Address
    up: bool
    remote: str | None


@dataclass(frozen=True)
class Session:
    """An end-to-end traffic session with a remote node."""

    key: bytes
    address: IPv6Address
    uptime: float


@dataclass(frozen=True)
class NodeStatus:
    """Everything `ygbridge status` shows about the router.

    ``sessions`` is empty when the TUN is disabled: getSessions is not asked then, because
    0.5.12 stops answering it once traffic arrives for a node that has no TUN to deliver to.
    """

    identity: NodeIdentity
    tun: TunState
    peers: tuple[Peer, ...]
    sessions: tuple[Session, ...]


@contextmanager
def _reading(request: str) -> Iterator[None]:
    """Turn a missing or malformed field into a RouterReplyError naming the request."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RouterReplyError(f"yggdrasil sent a {request} answer ygbridge cannot read ({exc!r})") from exc


def _key(text: str) -> bytes:
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError(f"key {text!r} is not 32 bytes")
    return key


def _optional(value: Any, kind: Callable[[Any], T]) -> T | None:
    return None if value is None or value == "" else kind(value)


def parse_self(response: Response) -> NodeIdentity:
    """getSelf: ``coords`` (0.4) and ``routing_entries`` (0.5) are ignored."""
    with _reading("getSelf"):
        return NodeIdentity(
            key=_key(response["key"]),
            address=IPv6Address(response["address"]),
            subnet=IPv6Network(response["subnet"]),
            build_name=str(response.get("build_name") or "unknown"),
            build_version=str(response.get("build_version") or "unknown"),
        )


def parse_tun(response: Response) -> TunState:
    """getTun: ``{"enabled": false}`` alone when the router runs with ``IfName: none``."""
    with _reading("getTun"):
        return TunState(
            enabled=bool(response["enabled"]),
            name=_optional(response.get("name"), str),
            mtu=_optional(response.get("mtu"), int),
        )


def parse_peers(response: Response) -> tuple[Peer, ...]:
    """getPeers: entries without a key (0.5 lists down peers with ``key: ""``) are left out.

    0.4.7 has no ``up`` field: it lists connected peers only.
    """
    with _reading("getPeers"):
        return tuple(
            Peer(
                key=_key(entry["key"]),
                address=IPv6Address(entry["address"]),
                up=bool(entry.get("up", True)),
                remote=_optional(entry.get("remote"), str),
            )
            for entry in response["peers"] or ()
            if entry.get("key")
        )


def parse_sessions(response: Response) -> tuple[Session, ...]:
    """getSessions: the same fields in 0.4.7 and 0.5.x."""
    with _reading("getSessions"):
        return tuple(
            Session(
                key=_key(entry["key"]),
                address=IPv6Address(entry["address"]),
                uptime=float(entry.get("uptime") or 0.0),
            )
            for entry in response["sessions"] or ()
        )
