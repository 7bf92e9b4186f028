"""Benchmark: mail between two real nodes (yggdrasil 0.5.12 in network namespaces, bridges under twistd).

Prints figures, asserts nothing. Run as root after `pip install .` (and .ci/run's installs):

    python bench/mesh_delivery.py [--messages 300] [--latency-samples 20]

Figures: submission rate (250 only after the commit), end-to-end throughput of a burst from
first submission until the last message is in the recipient's INBOX, single-message latency
(MAIL FROM on a logged-in connection -> IDLE `EXISTS` on the recipient), and the time to carry a 5 MB message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration import harness  # noqa: E402
from tests.integration.messages import make_message, send  # noqa: E402

PASSWORD = "bench-Secret-1"


def inbox_count(imap: object) -> int:
    status, data = imap.status("INBOX", "(MESSAGES)")  # type: ignore[attr-defined]
    assert status == "OK", data
    return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def wait_count(bridge: harness.Bridge, user: str, count: int, timeout: float) -> float:
    """Seconds until ``user``'s INBOX holds ``count`` messages (polled every 50 ms)."""
    start = time.monotonic()
    with bridge.imap((user, PASSWORD)) as imap:
        while inbox_count(imap) < count:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{user} has fewer than {count} messages after {timeout}s")
            time.sleep(0.05)
    return time.monotonic() - start


def idle_latency(a: harness.Node, b: harness.Node, alice: str, bob: str) -> float:
    """Seconds from MAIL FROM of one submission (already logged in) to bob's IDLE seeing it."""
    with b.bridge.imap(("bob", PASSWORD)) as imap:
        imap.select("INBOX")
        tag = imap._new_tag()  # type: ignore[attr-defined]
        imap.send(tag + b" IDLE\r\n")  # type: ignore[attr-defined]
        assert imap.readline().startswith(b"+")  # type: ignore[attr-defined]
        message, _ = make_message(alice, [bob], "latency", "ping\n")
        with a.bridge.smtp(("alice", PASSWORD)) as smtp:  # logged in before the clock starts
            start = time.monotonic()
            send(smtp, alice, [bob], message)
        while not imap.readline().rstrip().endswith(b"EXISTS"):  # type: ignore[attr-defined]
            pass
        elapsed = time.monotonic() - start
        imap.send(b"DONE\r\n")  # type: ignore[attr-defined]
        imap.readline()  # type: ignore[attr-defined]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--latency-samples", type=int, default=20)
    args = parser.parse_args()
    harness.check_privileges()
    with tempfile.TemporaryDirectory(prefix="ygbridge-bench-") as tmp, harness.Lab(Path(tmp)) as lab:
        a, b = lab.add_node("a", "0.5.12"), lab.add_node("b", "0.5.12")
        lab.connect(a, b)
        lab.start_routers()
        lab.wait_reachable(a, b)
        a.bridge.setup(users={"alice": PASSWORD})
        b.bridge.setup(users={"bob": PASSWORD})
        a.bridge.start()
        b.bridge.start()
        alice, bob = a.bridge.address_of("alice"), b.bridge.address_of("bob")

        latencies = sorted(idle_latency(a, b, alice, bob) for _ in range(args.latency_samples))
        already = args.latency_samples

        body = "x" * 70 + "\n"
        burst = [make_message(alice, [bob], f"burst {i}", body * 28)[0] for i in range(args.messages)]
        start = time.monotonic()
        with a.bridge.smtp(("alice", PASSWORD)) as smtp:
            for message in burst:
                send(smtp, alice, [bob], message)
        submitted = time.monotonic() - start
        delivered = submitted + wait_count(b.bridge, "bob", already + args.messages, timeout=600)

        big, _ = make_message(alice, [bob], "big", ("y" * 76 + "\n") * (5 * 1024 * 1024 // 77))
        start = time.monotonic()
        with a.bridge.smtp(("alice", PASSWORD)) as smtp:
            send(smtp, alice, [bob], big)
        big_time = time.monotonic() - start + wait_count(b.bridge, "bob", already + args.messages + 1, 120)

    n = args.messages
    print("| figure | value |\n|---|---|")
    print(f"| submission, {n} messages of ~2 KB over one connection | {n / submitted:.0f} msg/s |")
    rate = n / delivered
    print(f"| burst of {n}: submission -> all in the INBOX | {delivered:.1f} s ({rate:.0f} msg/s) |")
    print(
        f"| single message, MAIL FROM -> IDLE EXISTS (n={len(latencies)}) | median "
        f"{statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms |"
    )
    print(f"| 5 MB message, submission -> in recipient's INBOX | {big_time:.2f} s |")


if __name__ == "__main__":
    main()
