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
    api: str = "unknown"  # admin API line, told by getSelf's fields: "0.4" (coords), "0.5" (routing_entries)

    def describe_router(self) -> str:
        """The router software as far as it says: Debian's 0.4.7 reports neither name nor version."""
        name = self.build_name if self.build_name != "unknown" else "yggdrasil"
        if self.build_version != "unknown":
            return f"{name} {self.build_version}"
        api = f"; admin API {self.api}" if self.api != "unknown" else ""
        return f"{name} (version not reported{api})"


@dataclass(frozen=True)
class TunState:
    """The router's TUN interface; without it no packet reaches the mesh."""

    enabled: bool
    name: str | None
    mtu: int | None


@dataclass(frozen=True)
class Peer:
    """A peer link; 0.5 also lists a configured peer whose link is not up (without key or
    address, with the router's ``last_error``: why it failed, e.g. a version mismatch)."""

    key: bytes | None
    address: IPv6Address | None
    up: bool
    remote: str | None
    last_error: str | None = None


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
            api="0.5" if "routing_entries" in response else "0.4" if "coords" in response else "unknown",
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
    """getPeers: 0.5 lists configured peers that are down with ``key: ""``, no address, and
    ``last_error``; they are kept, with ``up`` false. 0.4.7 has no ``up`` field: it lists
    connected peers only.
    """
    with _reading("getPeers"):
        peers = []
        for entry in response["peers"] or ():
            keyed = bool(entry.get("key"))
            up = bool(entry.get("up", True)) and keyed
            if not keyed and not entry.get("remote"):
                continue  # nothing to show about it
            peers.append(
                Peer(
                    key=_key(entry["key"]) if keyed else None,
                    address=IPv6Address(entry["address"]) if keyed else None,
                    up=up,
                    remote=_optional(entry.get("remote"), str),
                    last_error=None if up else _optional(entry.get("last_error"), str),
                )
            )
        return tuple(peers)


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


def why_unreachable(
    destination: IPv6Address, peers: tuple[Peer, ...], sessions: tuple[Session, ...]
) -> str | None:
    """What the router's state says about a node that did not answer, or None if nothing.

    No peer up: the router's own reasons (e.g. a 0.4/0.5 version mismatch). Peers up but no
    session with the node: the mesh has no route to it.
    """
    if not any(peer.up for peer in peers):
        reasons = list(dict.fromkeys(peer.last_error for peer in peers if peer.last_error))
        return "peer down: " + "; ".join(reasons) if reasons else "peer down: this router has no peer up"
    if all(session.address != destination for session in sessions):
        return f"no route to node {destination.compressed}"
    return None
