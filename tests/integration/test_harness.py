"""The harness itself: routers of both lines peer in namespaces and carry traffic between them."""

from __future__ import annotations

import socket

import pytest

from . import harness


@pytest.mark.parametrize("version", ["0.4.7", "0.5.12"])
def test_two_routers_reach_each_other(lab: harness.Lab, version: str) -> None:
    a, b = lab.add_node("a", version), lab.add_node("b", version)
    lab.connect(a, b)
    lab.start_routers()
    lab.wait_reachable(a, b)

    assert a.address != b.address
    assert [p["key"] for p in a.router.peers_up()] == [b.router.key]
    assert [p["key"] for p in b.router.peers_up()] == [a.router.key]
    assert a.router.tun()["enabled"] is True

    # A socket made inside a namespace stays there: listen on B's mesh address, connect from A.
    with b.ns.entered():
        server = socket.create_server((str(b.address), 0), family=socket.AF_INET6)
    with server:
        port = server.getsockname()[1]
        with a.ns.entered():
            client = socket.create_connection((str(b.address), port), timeout=10)
        with client:
            server.settimeout(10)
            conn, peer = server.accept()
            with conn:
                assert peer[0] == str(a.address)  # the source address names the sending node
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
    # and the test thread is back in its own namespace: B's address is not routable here
    with pytest.raises(OSError):
        socket.create_connection((str(b.address), port), timeout=2).close()
