"""`250` means on disk: the bridge's database file is synced before the reply that accepts a
message is written, on submission and on mesh receipt (issue 9). The bridges run under strace,
which records the order of their fsync/fdatasync calls and socket writes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from . import harness
from .messages import make_message, send

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-1"}
SYNC = re.compile(r"^\d+ +(?:<\.\.\. )?f(?:data)?sync(?:\(\d+<(?P<path>[^>]+)>| resumed)")
WRITE = re.compile(
    r'^\d+ +(?:write|sendto|sendmsg|writev)\(\d+<TCP(?:v6)?:\[(?P<local>.*?)->.*?"(?P<data>[^"]*)'
)


def _events(trace: Path) -> list[tuple[str, str]]:
    """("sync", file) and ("reply:PORT", text written on a socket of local PORT), in the order the
    calls completed."""
    events: list[tuple[str, str]] = []
    pending_sync: dict[str, str] = {}
    for line in trace.read_text(errors="replace").splitlines():
        if (sync := SYNC.match(line)) is not None:
            pid = line.split()[0]
            if sync.group("path") is not None and line.endswith("<unfinished ...>"):
                pending_sync[pid] = sync.group("path")
            elif sync.group("path") is not None:
                events.append(("sync", sync.group("path")))
            elif pid in pending_sync and line.rstrip().endswith("= 0"):
                events.append(("sync", pending_sync.pop(pid)))
        elif (write := WRITE.match(line)) is not None:
            port = write.group("local").rsplit(":", 1)[1]
            events.append((f"reply:{port}", write.group("data")))
    return events


def _has_reply(data: str, code: str) -> bool:
    """Whether a write (as strace prints it, CRLF escaped) holds a reply line with ``code``."""
    return re.search(rf"(^|\\r\\n){code} ", data) is not None


def _synced_before_acceptance(events: list[tuple[str, str]], port: int, database: Path) -> bool:
    """Whether, between the reply before the message's `250 ... Message accepted` on ``port``
    (`354` after DATA; after BDAT, which has no reply of its own, the last RCPT's) and that
    `250`, the database (or its write-ahead log) was synced."""
    replies = [i for i, (kind, _) in enumerate(events) if kind == f"reply:{port}"]
    accepted = min(i for i in replies if "Message accepted" in events[i][1])
    go = max(i for i in replies if i < accepted)
    return any(
        kind == "sync" and Path(path).name.startswith(database.name) for kind, path in events[go:accepted]
    )


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (.ci/run installs it)")
def test_the_database_is_synced_before_250_on_both_ports(lab: harness.Lab, product: None) -> None:
    a, b = lab.add_node("a"), lab.add_node("b")
    lab.connect(a, b)
    lab.start_routers()
    lab.wait_reachable(a, b)
    traces = {}
    for node, user in ((a, "alice"), (b, "bob")):
        traces[node.name] = node.dir / "strace.txt"
        node.bridge.wrapper = [
            harness.find_command("strace"),
            "-f",
            "-yy",
            "-s",
            "256",
            "-e",
            "trace=fsync,fdatasync,write,writev,sendto,sendmsg",
            "-o",
            str(traces[node.name]),
        ]
        node.bridge.configure(tls={"allow_plaintext": "yes"})  # replies readable in the trace
        node.bridge.setup(users={user: PASSWORDS[user]})
        node.bridge.start(timeout=120)
    alice, bob = a.bridge.address_of("alice"), b.bridge.address_of("bob")
    message, _ = make_message(alice, [bob], "durable", "on disk before 250\n")
    mark = b.bridge.current().mark()
    with a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
        send(smtp, alice, [bob], message)
    b.bridge.current().wait_event("mesh.received", 60, since=mark)
    a.bridge.stop()
    b.bridge.stop()
    assert _synced_before_acceptance(_events(traces["a"]), harness.SUBMISSION_PORT, a.bridge.database)
    assert _synced_before_acceptance(_events(traces["b"]), harness.MESH_PORT, b.bridge.database)
