"""Labs: nodes (a namespace with its router and bridge) joined by veth links; closed at exit, and
the sweep of namespaces that dead runs left behind."""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .bridges import Bridge
from .errors import HarnessError
from .namespaces import Namespace, check_privileges
from .processes import run_command, tail
from .routers import ROUTER_PORT, Router
from .waiting import wait_until


class Node:
    """A namespace with its router and (not yet started) bridge."""

    def __init__(self, lab: Lab, name: str, version: str, ifname: str) -> None:
        self.lab = lab
        self.name = name
        self.dir = lab.dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ns = Namespace.create(f"{lab.prefix}-{name}")
        lab._namespaces.append(self.ns)
        self.router = Router(self, version, ifname)
        self.bridge = Bridge(self)

    @property
    def address(self) -> ipaddress.IPv6Address:
        """The node's yggdrasil address (known once its router has started)."""
        assert self.router.address is not None, "router not started"
        return self.router.address

    def ping(self, other: Node, timeout: float = 2.0) -> bool:
        """One ICMPv6 echo over the mesh to ``other``'s node address (stays inside our namespaces)."""
        result = self.ns.run(
            ["ping", "-6", "-c", "1", "-W", str(max(1, int(timeout))), str(other.address)],
            check=False,
            timeout=timeout + 5,
        )
        return result.returncode == 0


_live_labs: list[Lab] = []
_all_labs: list[Lab] = []
_lab_counter = 0


def _cleanup_all() -> None:
    for lab in list(_live_labs):
        lab.close()


atexit.register(_cleanup_all)


class Lab:
    """Namespaces, links, routers and bridges of one test scenario; :meth:`close` removes them all."""

    def __init__(self, directory: Path) -> None:
        global _lab_counter
        check_privileges()
        _lab_counter += 1
        self.prefix = f"ygb{os.getpid()}-L{_lab_counter}"
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, Node] = {}
        self._namespaces: list[Namespace] = []
        self._links = 0
        self._veths: dict[frozenset[str], list[tuple[Node, str]]] = {}
        self._dumped: dict[str, int] = {}
        self.closed_at: float | None = None
        _live_labs.append(self)
        _all_labs.append(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_node(self, name: str, version: str = "0.5.12", ifname: str = "auto") -> Node:
        """A new node: its namespace, a router of ``version`` (TUN ``ifname``), a bridge not yet set up."""
        if name in self.nodes:
            raise HarnessError(f"node {name!r} already exists")
        node = Node(self, name, version, ifname)
        self.nodes[name] = node
        return node

    def connect(self, dialer: Node, listener: Node) -> None:
        """A veth pair 10.231.N.1 (dialer) <-> 10.231.N.2 (listener); the dialer peers over TCP."""
        self._links += 1
        n = self._links
        if n > 250:
            raise HarnessError("too many links in one lab")
        ends = (
            (dialer, f"v{n}-{listener.name}"[:15], ipaddress.IPv4Address(f"10.231.{n}.1")),
            (listener, f"v{n}-{dialer.name}"[:15], ipaddress.IPv4Address(f"10.231.{n}.2")),
        )
        (a, a_if, _), (b, b_if, b_address) = ends
        run_command(
            f"ip link add {a_if} netns {a.ns.name} type veth peer name {b_if} netns {b.ns.name}".split()
        )
        for node, ifname, address in ends:
            node.ns.run(["ip", "addr", "add", f"{address}/24", "dev", ifname])
            node.ns.run(["ip", "link", "set", ifname, "up"])
        self._veths[frozenset((dialer.name, listener.name))] = [(node, ifname) for node, ifname, _ in ends]
        uri = f"tcp://{b_address}:{ROUTER_PORT}"
        listener.router.config["Listen"].append(uri)
        dialer.router.config["Peers"].append(uri)

    def shape_link(self, a: Node, b: Node, rate: str) -> None:
        """Limit what ``a`` sends to ``b`` over their veth to ``rate`` (a tc rate such as ``20mbit``)."""
        for node, ifname in self._veths[frozenset((a.name, b.name))]:
            if node is a:
                node.ns.run(
                    [
                        "tc",
                        "qdisc",
                        "replace",
                        "dev",
                        ifname,
                        "root",
                        "tbf",
                        "rate",
                        rate,
                        "burst",
                        "64kb",
                        "latency",
                        "1s",
                    ]
                )

    def set_link(self, a: Node, b: Node, up: bool) -> None:
        """Take the veth pair between ``a`` and ``b`` down (both ends, as a pulled cable) or up."""
        ends = self._veths.get(frozenset((a.name, b.name)))
        if ends is None:
            raise HarnessError(f"no link between {a.name} and {b.name}")
        for node, ifname in ends:
            node.ns.run(["ip", "link", "set", ifname, "up" if up else "down"])

    def start_routers(self, timeout: float = 30.0) -> None:
        """Start every router, then wait until each configured peering is up on both sides."""
        # Listeners first: a 0.4 router retries a refused peer only after a minute.
        for node in sorted(self.nodes.values(), key=lambda n: not n.router.config["Listen"]):
            if node.router.process is None:
                node.router.start(timeout)
        for node in self.nodes.values():
            expected = len(node.router.config["Peers"]) + sum(
                uri in other.router.config["Peers"]
                for other in self.nodes.values()
                for uri in node.router.config["Listen"]
            )
            if expected:
                node.router.wait_peers(expected, timeout)

    def wait_reachable(self, a: Node, b: Node, timeout: float = 30.0) -> None:
        """Both nodes answer ping over the mesh (routes and sessions established)."""
        wait_until(
            lambda: a.ping(b) and b.ping(a),
            timeout=timeout,
            interval=0.2,
            what=f"{a.name} and {b.name} to reach each other over yggdrasil",
        )

    def logs(self) -> dict[str, str]:
        """Router and bridge logs of every node; a log already returned unchanged is not repeated."""
        out: dict[str, str] = {}
        for node in self.nodes.values():
            for name, text in (
                (f"{node.name}: yggdrasil {node.router.version} log", node.router.log()),
                (f"{node.name}: ygbridge log", node.bridge.log()),
            ):
                if text and self._dumped.get(name) == len(text):
                    out[name] = f"(unchanged since the previous failure's dump, {node.dir})"
                else:
                    self._dumped[name] = len(text)
                    out[name] = tail(text) or "(empty)"
        return out

    def close(self) -> None:
        """Stop every bridge and router, delete every namespace (also the veths in them)."""
        if self in _live_labs:
            _live_labs.remove(self)
        errors: list[str] = []
        for node in self.nodes.values():
            for stop in (node.bridge.stop, node.router.stop):
                try:
                    stop()
                except Exception as exc:  # keep cleaning up
                    errors.append(f"{node.name}: {exc!r}")
        for ns in reversed(self._namespaces):
            try:
                ns.delete()
            except Exception as exc:
                errors.append(f"{ns.name}: {exc!r}")
        self.closed_at = time.monotonic()
        if errors:
            raise HarnessError("cleanup problems: " + "; ".join(errors))


def labs_active_since(start: float) -> list[Lab]:
    """Labs still open, or closed after ``start`` (for dumping logs of a failed test)."""
    return [lab for lab in _all_labs if lab.closed_at is None or lab.closed_at >= start]


_STALE = re.compile(r"^ygb(\d+)-L\d+-")


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by a harness run whose process is gone (e.g. after SIGKILL)."""
    result = run_command(["ip", "netns", "list"], check=False, timeout=10)
    removed = []
    for line in result.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _STALE.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its harness is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        Namespace(name).delete()
        removed.append(name)
    return removed


@dataclass
class Pair:
    """Two nodes of one lab: ``a`` peers with ``b``, both reach each other over the mesh, and each
    bridge is set up with its users and started."""

    lab: Lab
    a: Node
    b: Node

    def address(self, user: str) -> str:
        """``user@<domain>`` on the node that has ``user``."""
        for node in (self.a, self.b):
            if user in node.bridge.passwords:
                return node.bridge.address_of(user)
        raise HarnessError(f"neither {self.a.name} nor {self.b.name} has a user {user!r}")

    @classmethod
    def start(
        cls, lab: Lab, a_users: dict[str, str], b_users: dict[str, str], version: str = "0.5.12"
    ) -> Self:
        """Nodes ``a`` and ``b`` of ``version`` in ``lab``, linked, routed, with their bridges running."""
        a, b = lab.add_node("a", version), lab.add_node("b", version)
        lab.connect(a, b)
        lab.start_routers()
        lab.wait_reachable(a, b)
        a.bridge.setup(users=a_users)
        b.bridge.setup(users=b_users)
        a.bridge.start()
        b.bridge.start()
        return cls(lab, a, b)
