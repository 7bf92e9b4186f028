"""A 0.5.12 node whose only peer runs 0.4.7: they never peer, and ygbridge says why in words."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import harness
from .messages import make_message, send

PASSWORD = "alice-Secret-1"


def test_version_mismatch_is_named_in_status_and_queue(product: None, tmp_path: Path) -> None:
    with harness.Lab(tmp_path / "lab") as lab:
        a, b = lab.add_node("a", "0.5.12"), lab.add_node("b", "0.4.7")
        lab.connect(a, b)  # a dials b: the 0.5 router keeps the failed peer with its last_error
        b.router.start()
        a.router.start()
        a.bridge.setup(users={"alice": PASSWORD})
        a.bridge.start()

        down = re.compile(r"^  down  (\S+)  \((.+)\)$", re.MULTILINE)

        def shown() -> str | None:
            text = a.bridge.status()
            return text if down.search(text) else None

        status = harness.wait_until(
            shown,
            timeout=60,
            what="status to show the 0.4.7 peer down with the router's reason",
        )
        assert "peers:    0 up, 1 down" in status, status
        match = down.search(status)
        assert match is not None
        reason = match.group(2)

        alice = a.bridge.address_of("alice")
        bob = f"bob@{harness.meshname_domain(b.address)}"
        message, mid = make_message(alice, [bob], "across versions", "hello\n")
        run = a.bridge.current()
        with a.bridge.smtp(("alice", PASSWORD)) as smtp:
            send(smtp, alice, [bob], message)
        [deferred] = run.wait_events("delivery.deferred", 120, where=lambda e: e.get("message_id") == mid)
        assert deferred["error"].startswith(f"peer down: {reason}"), deferred
        queue_line = next(line for line in a.bridge.status().splitlines() if "waiting, next try" in line)
        assert f"last error: peer down: {reason}" in queue_line, queue_line
        assert not re.search(r"\b[A-Z]\w+Error\b", queue_line), queue_line  # no exception class names
        as_json = json.loads(a.bridge.cli("status", "--json").stdout)
        assert [(p["up"], p["error"]) for p in as_json["node"]["peers"]] == [(False, reason)]
        assert as_json["queue"][0]["last_error"].startswith(f"peer down: {reason}")
