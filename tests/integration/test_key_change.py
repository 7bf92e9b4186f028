"""The router's key changes under a running bridge (issue 4, "The router link"): the node moves
to its new domain, stops accepting mesh mail for the old one and says so in its log and status.

Two nodes (yggdrasil 0.5.12): A (alice) dials B (bob), so A's router, the one that comes back
with a new key, peers again at once. A's bridge keeps running while its router is stopped, given
a fresh key and started again. B's kernel gives up an unanswered TCP SYN after about 3 s
(``net.ipv4.tcp_syn_retries = 1`` in B's namespace): yggdrasil silently drops packets for a key
nobody holds any more, so B's attempts to A's old address fail quickly instead of hanging.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from . import harness
from .harness import smtp_client, wait_until
from .messages import count_message, make_message, send, wait_for_message

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-3"}
CHANGE_TIMEOUT = 60.0  # the bridge's reconnect backoff is far shorter
DELIVERY_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0  # B gives up a SYN after ~3 s (see the module doc)
_LISTENING = re.compile(r"\[([0-9a-f:]+)\]:(\d+)")


@dataclass(frozen=True)
class KeyChange:
    """A and B after A's router came back with a new key; ``mark``: A's events before that."""

    a: harness.Node
    b: harness.Node
    old_address: ipaddress.IPv6Address
    mark: int

    @property
    def new_address(self) -> ipaddress.IPv6Address:
        return self.a.address

    def alice(self, address: ipaddress.IPv6Address) -> str:
        """alice's mail address at one of A's addresses (domain computed by the harness)."""
        return f"alice@{harness.meshname_domain(address)}"

    @property
    def bob(self) -> str:
        return self.b.bridge.address_of("bob")

    def identity_changed(self) -> dict[str, Any]:
        """A's ``node.identity_changed`` event (bounded wait): the bridge has read the new key."""
        return self.a.bridge.current().wait_event("node.identity_changed", CHANGE_TIMEOUT, since=self.mark)

    def mesh_listeners(self) -> set[ipaddress.IPv6Address]:
        """The addresses on which something in A's namespace listens on the mesh port."""
        blocks = self.a.ns.tcp_sockets("listening", f"( sport = :{harness.MESH_PORT} )")
        return {ipaddress.IPv6Address(m[1]) for block in blocks if (m := _LISTENING.search(block))}

    def wait_moved(self) -> None:
        """Bounded wait until A's mesh listener is on the new address, and only there."""
        wait_until(
            lambda: self.mesh_listeners() == {self.new_address},
            timeout=CHANGE_TIMEOUT,
            what=f"A's mesh port to listen on {self.new_address} only",
            detail=lambda: f"listening on: {sorted(map(str, self.mesh_listeners()))}",
        )


def login(name: str) -> tuple[str, str]:
    return name, PASSWORDS[name]


def submit(node: harness.Node, user: str, sender: str, recipient: str, subject: str) -> str:
    """``user`` submits a message on ``node`` (it must be accepted); its Message-ID."""
    text, mid = make_message(sender, [recipient], subject, f"{subject}\n")
    with node.bridge.smtp(login(user)) as smtp:
        send(smtp, sender, [recipient], text)
    return mid


def wait_arrival(node: harness.Node, user: str, mid: str) -> None:
    """Bounded wait until exactly one copy of the message is in ``user``'s INBOX on ``node``."""
    with node.bridge.imap(login(user)) as imap:
        wait_for_message(imap, mid, timeout=DELIVERY_TIMEOUT)
        assert count_message(imap, mid) == 1


@pytest.fixture(scope="module")
def change(product: None, module_lab: harness.Lab) -> Iterator[KeyChange]:
    """Both bridges running, alice has mailed bob; then A's router is stopped, given a new key
    and started again."""
    a, b = module_lab.add_node("a", "0.5.12"), module_lab.add_node("b", "0.5.12")
    module_lab.connect(a, b)
    module_lab.start_routers()
    module_lab.wait_reachable(a, b)
    b.ns.sysctl("net.ipv4.tcp_syn_retries", "1")
    a.bridge.setup(users={"alice": PASSWORDS["alice"]})
    b.bridge.setup(users={"bob": PASSWORDS["bob"]})
    a.bridge.start()
    b.bridge.start()
    before = submit(a, "alice", a.bridge.address_of("alice"), b.bridge.address_of("bob"), "before")
    wait_arrival(b, "bob", before)  # and alice's submission has seen her old address
    old_address, mark = a.address, a.bridge.current().mark()
    a.router.stop()
    a.router.new_key()
    a.router.start()
    assert a.address != old_address, "the harness did not give A's router a new key"
    module_lab.start_routers()  # waits for the peering to be up again
    module_lab.wait_reachable(a, b)
    yield KeyChange(a, b, old_address, mark)


def first_index(run: harness.BridgeRun, name: str, since: int) -> int | None:
    """Position in the run's event list of the first event named ``name`` after ``since``."""
    with run.changed:
        return next((i for i, e in enumerate(run.events) if i >= since and e.get("event") == name), None)


def test_bridge_logs_the_change_loudly_and_stays_up(change: KeyChange) -> None:
    """router.disconnected, then one critical node.identity_changed (old -> new); twistd runs on."""
    event = change.identity_changed()
    run = change.a.bridge.current()
    disconnected = first_index(run, "router.disconnected", change.mark)
    changed = first_index(run, "node.identity_changed", change.mark)
    assert disconnected is not None, "no router.disconnected when A's router stopped"
    assert changed is not None and disconnected < changed
    assert event["level"] == "critical", event
    assert event["old_address"] == change.old_address.compressed, event
    assert event["new_address"] == change.new_address.compressed, event
    assert len(run.matching("node.identity_changed", since=change.mark)) == 1
    change.wait_moved()
    assert run.process.poll() is None, "A's bridge exited after the key change"
    for fatal in ("ygbridge.start_failed", "mesh.listen_failed"):
        assert not run.matching(fatal, since=change.mark), fatal


def test_mesh_no_longer_accepts_mail_for_the_old_domain(change: KeyChange) -> None:
    """A's new address refuses RCPT for the old domain (550: not this node); nobody answers on
    the old address."""
    change.wait_moved()
    with smtp_client(change.b.ns, change.new_address.compressed, harness.MESH_PORT) as smtp:
        assert smtp.mail(change.bob)[0] == 250
        code, reply = smtp.rcpt(change.alice(change.old_address))
        assert code == 550, reply
        code, reply = smtp.rcpt(change.alice(change.new_address))
        assert code == 250, reply
        smtp.rset()
    with change.b.ns.entered(), pytest.raises(OSError):
        socket.create_connection(
            (change.old_address.compressed, harness.MESH_PORT), timeout=CONNECT_TIMEOUT
        ).close()


def test_mail_queued_on_b_for_the_old_domain_is_not_delivered(change: KeyChange) -> None:
    """B accepts and queues mail for alice at the old domain; its attempt fails, alice gets nothing."""
    change.wait_moved()
    mid = submit(change.b, "bob", change.bob, change.alice(change.old_address), "old domain")
    change.b.bridge.current().wait_events(
        "delivery.deferred", DELIVERY_TIMEOUT, where=lambda e: e.get("message_id") == mid
    )
    with change.a.bridge.imap(login("alice")) as imap:
        assert count_message(imap, mid) == 0


def test_mail_to_the_new_domain_is_delivered(change: KeyChange) -> None:
    """bob on B mails alice at her new domain: it arrives once in her INBOX on A."""
    change.wait_moved()
    mid = submit(change.b, "bob", change.bob, change.alice(change.new_address), "new domain")
    wait_arrival(change.a, "alice", mid)


def test_status_warns_about_the_old_domain(change: KeyChange) -> None:
    """Once the bridge serves the new address, status names it and warns about the old domain."""
    change.wait_moved()
    old_domain = harness.meshname_domain(change.old_address)
    text = change.a.bridge.status()
    assert change.new_address.compressed in text, text
    assert any("WARNING" in line and old_domain in line for line in text.splitlines()), text
    assert change.a.bridge.cli("address", "alice").stdout.strip() == change.alice(change.new_address)


def test_alice_submits_only_as_her_new_address(change: KeyChange) -> None:
    """MAIL FROM her old address is refused (553); from the new one, bob receives it."""
    change.wait_moved()
    with change.a.bridge.smtp(login("alice")) as smtp:
        code, reply = smtp.mail(change.alice(change.old_address))
        assert code == 553, reply
    mid = submit(change.a, "alice", change.alice(change.new_address), change.bob, "new sender")
    wait_arrival(change.b, "bob", mid)  # B accepts it only from A's new address
