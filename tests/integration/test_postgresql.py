"""A node whose store is a real PostgreSQL server: mail over the mesh both ways, and SEARCH there."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ygbridge.testing import postgresql

from . import harness
from .messages import check_delivered, fetch_body, make_message, send, wait_for_message

PASSWORD = "pg-Secret-1"
TIMEOUT = 60.0


@pytest.fixture
def nodes(
    product: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[harness.Node, harness.Node]]:
    """Node a on PostgreSQL, node b on SQLite, peered."""
    if postgresql.server_binaries() is None and not os.environ.get("YGBRIDGE_TEST_POSTGRESQL"):
        pytest.skip("no PostgreSQL server installed (apt install postgresql)")
    with postgresql.running_server() as url, harness.Lab(tmp_path_factory.mktemp("pg")) as lab:
        a, b = lab.add_node("a", "0.5.12"), lab.add_node("b", "0.5.12")
        lab.connect(a, b)
        lab.start_routers()
        lab.wait_reachable(a, b)
        a.bridge.configure(storage={"database": url})
        a.bridge.setup(users={"alice": PASSWORD})
        b.bridge.setup(users={"bob": PASSWORD})
        a.bridge.start()
        b.bridge.start()
        yield a, b


def test_mail_both_ways_and_search_on_postgresql(nodes: tuple[harness.Node, harness.Node]) -> None:
    a, b = nodes
    alice, bob = a.bridge.address_of("alice"), b.bridge.address_of("bob")
    out, out_id = make_message(alice, [bob], "from postgres", "Grüße from a PostgreSQL store\n")
    with a.bridge.smtp(("alice", PASSWORD)) as smtp:
        send(smtp, alice, [bob], out)
    with b.bridge.imap(("bob", PASSWORD)) as imap:
        stored = fetch_body(imap, wait_for_message(imap, out_id, timeout=TIMEOUT))
        check_delivered(stored, out, received=2, return_path=alice)
    back, back_id = make_message(bob, [alice], "to postgres", "Reply with a Needle in it\n")
    with b.bridge.smtp(("bob", PASSWORD)) as smtp:
        send(smtp, bob, [alice], back)
    with a.bridge.imap(("alice", PASSWORD)) as imap:
        uid = wait_for_message(imap, back_id, timeout=TIMEOUT)
        check_delivered(fetch_body(imap, uid), back, received=2, return_path=bob)
        status, found = imap.uid("SEARCH", "BODY", "needle")  # case-insensitive, in the bytea body
        assert status == "OK" and found[0].split() == [str(uid).encode()]
        status, found = imap.uid("SEARCH", "TEXT", "nowhere-to-be-found")
        assert status == "OK" and found[0].split() == []
