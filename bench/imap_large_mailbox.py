"""IMAP on a large mailbox: time and peak Python memory of SELECT, FETCH, SEARCH and STORE.

Fills INBOX of one user with N messages (default 50,000; ygbridge.testing.messages) in a
temporary SQLite file through the store's own add_message, then drives one IMAP session
(ygbridge.testing.imap) through a transport that keeps none of what the server writes. Database
work runs on this thread (as on the DB thread, but without a reactor). Every command runs twice:
timed, then under tracemalloc (which slows Python down and sees Python's allocations, not
SQLite's own page cache); the process's peak RSS is printed too.
Prints figures; asserts nothing.

    PYTHONPATH=. python bench/imap_large_mailbox.py [--messages N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from ygbridge.store.db import connect
from ygbridge.store.models import database
from ygbridge.testing.imap import Client, ImapLab
from ygbridge.testing.messages import START, fill_inbox
from ygbridge.testing.transports import CountingTransport


def fill(count: int) -> float:
    """Fill alice's INBOX with ``count`` generated messages; the seconds it took."""
    started = time.perf_counter()
    fill_inbox(count)
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(server: Any, transport: CountingTransport, command: bytes) -> tuple[float, str]:
    """Send one command; (seconds until it was answered, its tagged answer)."""
    transport.written = 0
    started = time.perf_counter()
    server.dataReceived(command)
    elapsed = time.perf_counter() - started
    return elapsed, transport.tail.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1].decode(errors="replace")


def traced(server: Any, transport: CountingTransport, command: bytes) -> tuple[float, float]:
    """Send one command under tracemalloc; (peak, still held) Python memory it added, in MB."""
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    server.dataReceived(command)
    after, peak = tracemalloc.get_traced_memory()
    return (peak - before) / 1e6, (after - before) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        connect(f"sqlite:///{path}", Path(directory))
        seconds = fill(options.messages)
        size = path.stat().st_size / 1e6
        print(f"filled INBOX with {options.messages} messages in {seconds:.0f} s ({size:.0f} MB database)")
        print(f"process peak RSS after filling: {peak_rss_mb():.0f} MB")

        lab = ImapLab(now=START + options.messages * 60, max_message_size=32 * 1024 * 1024)
        transport = CountingTransport()
        server = Client(lab.factory, transport).server
        server.dataReceived(b"a LOGIN alice secret\r\n")

        n = options.messages
        commands = [
            b"s SELECT INBOX",
            b"f FETCH 1:* (UID FLAGS RFC822.SIZE)",
            b"f UID FETCH 1:* (FLAGS)",
            b"f FETCH 1:* (ENVELOPE)",
            b"f FETCH 1:* (BODY.PEEK[])",
            b"f FETCH %d:%d (BODY.PEEK[])" % (n // 2, n // 2 + 99),
            b"s SEARCH UNSEEN",
            b"s UID SEARCH ALL",
            b"s SEARCH FROM sender42",
            b's SEARCH SUBJECT "topic 7" SINCE 1-Dec-2023',
            b"s SEARCH HEADER Message-ID <4711@",
            b"s SEARCH SENTON 14-Nov-2023 NOT SEEN",
            b"s SEARCH BODY realistic",
            b"s STORE 1:* +FLAGS.SILENT (\\Flagged)",
            b"s STORE 1:* -FLAGS.SILENT (\\Flagged)",
            b"s SELECT INBOX",
        ]
        timed = [run(server, transport, command + b"\r\n") for command in commands]
        tracemalloc.start()
        memory = [traced(server, transport, command + b"\r\n") for command in commands]
        tracemalloc.stop()
        print(f"{'command':<46} {'time':>10} {'peak memory':>12} {'held after':>11}  answer")
        for command, (seconds, answer), (peak, held) in zip(commands, timed, memory, strict=True):
            label = command.split(b" ", 1)[1].decode()
            print(f"{label:<46} {seconds * 1000:7.0f} ms {peak:9.2f} MB {held:8.2f} MB  {answer[:32]}")
        print(f"process peak RSS at the end: {peak_rss_mb():.0f} MB")
        database.close()


if __name__ == "__main__":
    main()
