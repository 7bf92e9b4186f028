"""Benchmark: mail between two ygbridge nodes against its anchors, measured in the same run.

Four yggdrasil 0.5.12 routers in network namespaces: ygbridge on nodes A and B, a private
Postfix (Debian's) on nodes P and Q, each pair on its own link. Every figure is measured for
ygbridge and for its anchor in turn (interleaved, ``--rounds`` times) and printed as a ratio,
with the machine's load average beside it. Prints figures, asserts nothing. Run as root from
the repository root after ``pip install .`` (and .ci/run's installs)::

    python -m bench.mesh_delivery [--short] [--messages 2500] [--rounds 2] [--profile DIR]

Figures (issue 9):
  throughput  4 clients x N messages of 10 KB submitted on A -> all in B's INBOX, against
              Postfix P -> Postfix Q (submitted to P's port 25, all in Q's Maildir)
  large       one 32 MiB message submitted on A -> in B's INBOX (STATUS every 20 ms), both clients logged
              in before the clock starts, against raw TCP carrying as many bytes over the same kind of
              link (a small Python sender and receiver in A and B)
  latency     p50 of MAIL FROM (logged in) -> the recipient's IDLE `EXISTS` on B, against Postfix
              MAIL FROM -> the file in Q's Maildir
  memory      RSS of each bridge idle, and after the throughput rounds' deliveries
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tests.integration import harness, postfix
from tests.integration.messages import make_message, send

PASSWORD = "bench-Secret-1"
CLIENTS = 4
KB10 = ("x" * 76 + "\n") * (10 * 1024 // 77)
RAW_PORT = 9925

RECEIVER = """
import socket, sys
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print("ready", flush=True)
conn, _ = server.accept()
total = 0
while chunk := conn.recv(1 << 20):
    total += len(chunk)
conn.sendall(str(total).encode())
conn.close()
"""

SENDER = """
import socket, sys, time
size = int(sys.argv[3])
block = b"y" * (1 << 20)
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
start = time.monotonic()
sent = 0
while sent < size:
    sent += conn.send(block[: size - sent])
conn.shutdown(socket.SHUT_WR)
assert int(conn.recv(64)) == size
print(time.monotonic() - start)
"""


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def rss_mib(bridge: harness.Bridge) -> float:
    assert bridge.run is not None
    status = Path(f"/proc/{bridge.run.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def inbox_count(imap: imaplib.IMAP4) -> int:
    status, data = imap.status("INBOX", "(MESSAGES)")
    assert status == "OK", data
    return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def wait_for(count: Callable[[], int], target: int, timeout: float, what: str) -> None:
    """Until ``count()`` reaches ``target`` (polled every 20 ms)."""
    start = time.monotonic()
    while (now := count()) < target:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: {now} of {target} after {timeout:.0f}s")
        time.sleep(0.02)


def wait_inbox(bridge: harness.Bridge, user: str, target: int, timeout: float) -> None:
    """Until ``user``'s INBOX holds ``target`` messages (STATUS on one logged-in connection)."""
    with bridge.imap((user, PASSWORD)) as imap:
        wait_for(lambda: inbox_count(imap), target, timeout, f"{user}'s INBOX")


def maildir_count(server: postfix.Postfix, user: str) -> int:
    folder = server.mail / user / "new"
    return len(os.listdir(folder)) if folder.is_dir() else 0


class Site:
    """The four nodes, the two bridges and the two Postfix instances."""

    def __init__(self, lab: harness.Lab) -> None:
        self.a, self.b = lab.add_node("a", "0.5.12"), lab.add_node("b", "0.5.12")
        self.p, self.q = lab.add_node("p", "0.5.12"), lab.add_node("q", "0.5.12")
        lab.connect(self.a, self.b)
        lab.connect(self.p, self.q)
        lab.start_routers()
        lab.wait_reachable(self.a, self.b)
        lab.wait_reachable(self.p, self.q)
        generous = {"mesh_messages_per_hour": "100000000", "mesh_bytes_per_hour": "1000GiB"}
        for bridge, user in ((self.a.bridge, "alice"), (self.b.bridge, "bob")):
            bridge.configure(limits=generous, delivery={"max_message_size": "40MiB"})
            bridge.setup(users={user: PASSWORD})
            bridge.start()
        self.alice, self.bob = self.a.bridge.address_of("alice"), self.b.bridge.address_of("bob")
        self.postfix_p = postfix.Postfix(self.p, users=["carol"])
        self.postfix_q = postfix.Postfix(self.q, users=["dave"])
        self.postfix_p.start(ygbridge_nodes=[self.q.address])  # its transport map: Q's domain -> Q
        self.postfix_q.start(ygbridge_nodes=[])
        self.carol, self.dave = self.postfix_p.address_of("carol"), self.postfix_q.address_of("dave")
        with self.b.bridge.imap(("bob", PASSWORD)) as imap:
            self.in_b = inbox_count(imap)

    def close(self) -> None:
        self.postfix_p.close()
        self.postfix_q.close()

    # -- throughput

    def _burst(
        self, connect: Callable[[], AbstractContextManager[smtplib.SMTP]], sender: str, recipient: str, n: int
    ) -> None:
        """``CLIENTS`` clients at once, each submitting ``n`` messages (each its own Message-ID: a
        node stores a retried message once) on one connection."""
        errors: list[BaseException] = []

        def client() -> None:
            try:
                with connect() as smtp:
                    for i in range(n):
                        message = make_message(sender, [recipient], f"burst {i}", KB10)[0]
                        send(smtp, sender, [recipient], message)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def ygbridge_throughput(self, n: int) -> tuple[float, float]:
        """(end to end, submission alone) in messages per second."""
        start = time.monotonic()
        self._burst(lambda: self.a.bridge.smtp(("alice", PASSWORD)), self.alice, self.bob, n)
        submitted = time.monotonic() - start
        self.in_b += CLIENTS * n
        wait_inbox(self.b.bridge, "bob", self.in_b, 1800)
        return CLIENTS * n / (time.monotonic() - start), CLIENTS * n / submitted

    def postfix_throughput(self, n: int) -> tuple[float, float]:
        """(end to end, submission alone) in messages per second."""
        before = maildir_count(self.postfix_q, "dave")
        start = time.monotonic()
        self._burst(
            lambda: harness.smtp_client(self.p.ns, self.p.address.compressed, 25),
            self.carol,
            self.dave,
            n,
        )
        submitted = time.monotonic() - start
        target = before + CLIENTS * n
        wait_for(lambda: maildir_count(self.postfix_q, "dave"), target, 1800, "dave's Maildir")
        return CLIENTS * n / (time.monotonic() - start), CLIENTS * n / submitted

    # -- one large message

    def ygbridge_large(self, size: int) -> float:
        body = ("y" * 76 + "\n") * (size // 77)
        message = make_message(self.alice, [self.bob], "large", body)[0]
        with (
            self.b.bridge.imap(("bob", PASSWORD)) as imap,
            self.a.bridge.smtp(("alice", PASSWORD), timeout=600) as smtp,
        ):
            start = time.monotonic()  # after both logins (argon2id), as for latency
            send(smtp, self.alice, [self.bob], message)
            self.in_b += 1
            wait_for(lambda: inbox_count(imap), self.in_b, 600, "bob's INBOX")
            return len(message) / (time.monotonic() - start) / 1e6

    def raw_tcp(self, size: int) -> float:
        receiver = self.b.ns.popen(
            [sys.executable, "-c", RECEIVER, self.b.address.compressed, str(RAW_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
            sender = self.a.ns.run(
                [sys.executable, "-c", SENDER, self.b.address.compressed, str(RAW_PORT), str(size)],
                timeout=600,
            )
            return size / float(sender.stdout) / 1e6
        finally:
            receiver.wait(timeout=60)

    # -- latency

    def ygbridge_latency(self) -> float:
        """MAIL FROM of one submission (already logged in) -> bob's IDLE seeing it."""
        with self.b.bridge.imap(("bob", PASSWORD)) as imap:
            imap.select("INBOX")
            tag = imap._new_tag()
            imap.send(tag + b" IDLE\r\n")
            assert imap.readline().startswith(b"+")
            message, _ = make_message(self.alice, [self.bob], "latency", "ping\n")
            with self.a.bridge.smtp(("alice", PASSWORD)) as smtp:
                start = time.monotonic()
                send(smtp, self.alice, [self.bob], message)
            while not imap.readline().rstrip().endswith(b"EXISTS"):
                pass
            elapsed = time.monotonic() - start
            imap.send(b"DONE\r\n")
            imap.readline()
        self.in_b += 1
        return elapsed

    def postfix_latency(self) -> float:
        """MAIL FROM on P -> the file in dave's Maildir on Q (polled every millisecond)."""
        before = maildir_count(self.postfix_q, "dave")
        message, _ = make_message(self.carol, [self.dave], "latency", "ping\n")
        with harness.smtp_client(self.p.ns, self.p.address.compressed, 25) as smtp:
            start = time.monotonic()
            send(smtp, self.carol, [self.dave], message)
        while maildir_count(self.postfix_q, "dave") <= before:
            if time.monotonic() - start > 60:
                raise TimeoutError("Postfix did not deliver within 60 s")
            time.sleep(0.001)
        return time.monotonic() - start


def profiled(
    directory: Path | None, bridges: list[harness.Bridge], seconds: int
) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each bridge for ``seconds`` (when a directory is given and py-spy found)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if directory is None or not Path(spy).exists():
        return []
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(bridge.run.process.pid),
                "-d",
                str(seconds),
                "-f",
                "raw",
                "-o",
                str(directory / f"{bridge.node.name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for bridge in bridges
        if bridge.run is not None
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="a minute or two: small N, one round (CI)")
    parser.add_argument("--messages", type=int, help="messages per client per round (default 2500)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 2)")
    parser.add_argument("--latency-samples", type=int, help="per side and round (default 15)")
    parser.add_argument("--large-mib", type=int, help="size of the large message (default 32)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy raw profiles of both bridges go here (large message: large/)"
    )
    args = parser.parse_args()
    n = args.messages or (25 if args.short else 2500)
    rounds = args.rounds or (1 if args.short else 2)
    samples = args.latency_samples or (3 if args.short else 15)
    large = (args.large_mib or (4 if args.short else 32)) * 1024 * 1024
    harness.check_privileges()
    if (missing := postfix.postfix_available()) is not None:
        sys.exit(f"the Postfix anchor cannot run: {missing}")
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="ygbridge-bench-") as tmp, harness.Lab(Path(tmp)) as lab:
        site = Site(lab)
        try:
            time.sleep(2)  # settled after start-up
            idle = {b.node.name: rss_mib(b) for b in (site.a.bridge, site.b.bridge)}
            deliveries = 0
            for r in range(rounds):
                spies = profiled(args.profile if r == 0 else None, [site.a.bridge, site.b.bridge], 30)
                ours, ours_submitted = site.ygbridge_throughput(n)
                for spy in spies:
                    spy.wait()
                deliveries += CLIENTS * n
                theirs, theirs_submitted = site.postfix_throughput(n)
                rows.append(
                    (
                        f"throughput, {CLIENTS} x {n} x 10 KB",
                        f"{ours:.0f} msg/s",
                        f"{theirs:.0f} msg/s",
                        f"{ours / theirs:.2f}",
                        load(),
                    )
                )
                rows.append(
                    (
                        "of which submission alone (all 250s)",
                        f"{ours_submitted:.0f} msg/s",
                        f"{theirs_submitted:.0f} msg/s",
                        f"{ours_submitted / theirs_submitted:.2f}",
                        load(),
                    )
                )
            after = {b.node.name: rss_mib(b) for b in (site.a.bridge, site.b.bridge)}
            for name in idle:
                rows.append(
                    (
                        f"RSS of {name.upper()}, idle -> after {deliveries} deliveries",
                        f"{idle[name]:.0f} -> {after[name]:.0f} MiB",
                        "60 MiB idle, +20 %",
                        f"{after[name] / idle[name]:.2f}",
                        load(),
                    )
                )
            for r in range(rounds):
                large_profile = args.profile / "large" if args.profile and r == 0 else None
                spies = profiled(large_profile, [site.a.bridge, site.b.bridge], 10)
                ours = site.ygbridge_large(large)
                for spy in spies:
                    spy.wait()
                theirs = site.raw_tcp(large)
                rows.append(
                    (
                        f"one {large >> 20} MiB message",
                        f"{ours:.1f} MB/s",
                        f"raw TCP {theirs:.1f} MB/s",
                        f"{ours / theirs:.2f}",
                        load(),
                    )
                )
            for _ in range(rounds):
                ours_l, theirs_l = [], []
                for _ in range(samples):
                    ours_l.append(site.ygbridge_latency())
                    theirs_l.append(site.postfix_latency())
                ours, theirs = statistics.median(ours_l), statistics.median(theirs_l)
                rows.append(
                    (
                        f"latency p50, n={samples}",
                        f"{ours * 1000:.1f} ms",
                        f"{theirs * 1000:.1f} ms",
                        f"{ours / theirs:.2f}",
                        load(),
                    )
                )
        finally:
            site.close()
    print("| figure | ygbridge | anchor | ratio | machine |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
