"""IMAP figures of issue 9 as ratios to Dovecot, on the same generated mailbox, interleaved.

Dovecot (Debian's dovecot-imapd) is started by this script as root in a temporary directory with
its own config, listening on 127.0.0.1, over a Maildir of the SAME messages (bench/
ygbridge.testing.messages' generator: 1 in 3 unseen); its index is warmed by one pass of every
command before anything is timed. ygbridge runs in a child process of this script: the real
IMAP server (ygbridge.imap.server), MailHub and DBThread on a real reactor and a real
SQLite file, listening on 127.0.0.1 -- not a whole twistd bridge, which would need a yggdrasil
router and namespaces for nothing the IMAP figures depend on, and the child lets the reactor-lag
probe (a 10 ms LoopingCall measuring its own worst delay) run inside the server.

Each figure is timed with a minimal socket client (so the client's own parsing weighs the
same on both sides and little), except APPEND, which uses Python's imaplib unmodified. Rounds
alternate which server goes first; the median of each is printed with the ratio and the load
average. ``--short`` (a few thousand messages, well under 2 minutes) is what CI runs so that this
cannot rot; nothing here asserts a timing.

    sudo PYTHONPATH=. python bench/imap_dovecot.py [--messages 20000] [--short]
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ygbridge.testing.messages import START, fill_inbox, numbered_message

#: What Delta Chat asks for when it fetches new messages' headers.
HEADER_FIELDS = (
    b"FROM TO CC DATE SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES CHAT-VERSION AUTOCRYPT-SETUP-MESSAGE"
)
PASSWORD = "secret"
#: A day in the middle of the generated arrival times (one message a minute from START).
SINCE_DAY = b"21-Nov-2023"
DOVECOT_CONF = """\
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


class Raw:
    """A minimal IMAP client: one command at a time, answered once its tagged line is read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.tags = 0
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        self.buffer = b""
        self.command(b"LOGIN alice " + PASSWORD.encode())

    def command(self, text: bytes) -> tuple[float, bytes]:
        """(seconds until the tagged answer, the whole answer)."""
        self.tags += 1
        tag = b"Z%d" % self.tags
        started = time.perf_counter()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        marker = b"\r\n" + tag + b" "
        data = b"\r\n"
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the server hung up")
            data += chunk
            at = data.rfind(marker)
            if at >= 0 and data.endswith(b"\r\n") and data.find(b"\r\n", at + 2) == len(data) - 2:
                break
        elapsed = time.perf_counter() - started
        answer = data[2:]
        if not answer[at:].split(b" ", 2)[1:2] == [b"OK"]:
            raise RuntimeError(f"{text!r} failed: {answer[-200:]!r}")
        return elapsed, answer

    def close(self) -> None:
        self.sock.close()


# The two servers


def write_maildir(home: Path, count: int) -> None:
    """The generated mailbox as a Maildir (flags in the names, arrival times as mtimes)."""
    cur = home / "Maildir" / "cur"
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        when = START + n * 60
        path = cur / f"{int(when)}.M{n}P1.bench:2,{'S' if n % 3 else ''}"
        path.write_bytes(numbered_message(n))
        os.utime(path, (when, when))


def start_dovecot(tmp: Path, count: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    nobody = pwd.getpwnam("nobody")
    home = tmp / "home" / "alice"
    write_maildir(home, count)
    conf = tmp / "dovecot.conf"
    conf.write_text(
        DOVECOT_CONF.format(tmp=tmp, port=port, password=PASSWORD, uid=nobody.pw_uid, gid=nobody.pw_gid)
    )
    subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(tmp / "home")], check=True)
    server = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(conf)])
    wait_for_port(port)
    return server, port


def start_ygbridge(tmp: Path, count: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    from ygbridge.store.db import connect
    from ygbridge.store.models import database

    path = tmp / "ygbridge.db"
    connect(f"sqlite:///{path}", tmp)
    fill_inbox(count)
    database.close()
    port = free_port()
    probe = tmp / "lag.json"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(path), str(port), str(probe)])
    wait_for_port(port)
    return server, port, probe


def serve(path: str, port: int, probe: str) -> None:
    """The ygbridge side: IMAP over the store on a real reactor, and the reactor-lag probe.

    SIGUSR1 starts the load phase (forget the worst lag so far, deliver a message every 20 ms);
    SIGUSR2 writes {"worst_lag_ms", "deliveries"} to ``probe``.
    """
    from twisted.internet import reactor, task
    from twisted.internet.interfaces import IReactorThreads

    from ygbridge.mailhub import MailHub
    from ygbridge.store.db import DBThread, connect
    from ygbridge.testing.imap import alice_checker, imap_factory

    connect(f"sqlite:///{path}", Path(path).parent)
    threads = IReactorThreads(reactor)
    store = DBThread(threads)
    store.startService()
    mailhub = MailHub(store, reactor)
    factory = imap_factory(mailhub, reactor, alice_checker(PASSWORD.encode()), max_message_size=32 << 20)
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    state = {"worst": 0.0, "last": time.monotonic(), "deliveries": 0}

    def tick() -> None:
        now = time.monotonic()
        state["worst"] = max(state["worst"], now - state["last"] - 0.010)
        state["last"] = now

    def deliver() -> None:
        body = numbered_message(100_000 + int(state["deliveries"]))
        mailhub.deliver("alice", body, message_id=None, sender_node=None)
        state["deliveries"] += 1

    deliveries = task.LoopingCall(deliver)

    def load(*_: object) -> None:
        threads.callFromThread(lambda: (state.update(worst=0.0), deliveries.start(0.020)))

    def report(*_: object) -> None:
        def write() -> None:
            if deliveries.running:
                deliveries.stop()
            figures = {"worst_lag_ms": state["worst"] * 1000, "deliveries": state["deliveries"]}
            Path(probe).write_text(json.dumps(figures))

        threads.callFromThread(write)

    signal.signal(signal.SIGUSR1, load)
    signal.signal(signal.SIGUSR2, report)
    task.LoopingCall(tick).start(0.010)
    reactor.addSystemEventTrigger("before", "shutdown", store.stopService)
    reactor.run()


# The figures


def figures(count: int) -> dict[str, Callable[[int], float]]:
    """Each figure: a function of a server's port giving seconds (or messages per second)."""
    first_header = max(1, count - 499)

    def selected(command: bytes) -> Callable[[int], float]:
        def timed(port: int) -> float:
            client = Raw(port)
            client.command(b"SELECT INBOX")
            best = min(client.command(command)[0] for _ in range(3))
            client.close()
            return best

        return timed

    def unselected(command: bytes) -> Callable[[int], float]:
        def timed(port: int) -> float:
            client = Raw(port)
            best = min(client.command(command)[0] for _ in range(5))
            client.close()
            return best

        return timed

    def append(port: int) -> float:
        client = imaplib.IMAP4("127.0.0.1", port)
        client.login("alice", PASSWORD)
        body = numbered_message(7)
        rounds = 100
        started = time.perf_counter()
        for _ in range(rounds):
            client.append("Bench", None, None, body)
        elapsed = time.perf_counter() - started
        client.logout()
        return rounds / elapsed

    return {
        "UID FETCH 1:* (UID FLAGS)": selected(b"UID FETCH 1:* (UID FLAGS)"),
        "Delta Chat header fetch of the last 500": selected(
            b"UID FETCH %d:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (%b)])" % (first_header, HEADER_FIELDS)
        ),
        "UID SEARCH UNSEEN": selected(b"UID SEARCH UNSEEN"),
        "STATUS INBOX (MESSAGES UNSEEN)": unselected(b"STATUS INBOX (MESSAGES UNSEEN)"),
        "SELECT INBOX": unselected(b"SELECT INBOX"),
        "APPEND, imaplib (msg/s)": append,
        "UID SEARCH SINCE": selected(b"UID SEARCH SINCE " + SINCE_DAY),
    }


def warm(port: int, count: int) -> None:
    """One pass of every command (Dovecot builds its index and caches here), and the Bench mailbox."""
    client = Raw(port)
    client.command(b"CREATE Bench")
    client.close()
    for measure in figures(count).values():
        measure(port)


def lag_probe(server: subprocess.Popen[bytes], port: int, probe: Path, seconds: float) -> dict[str, float]:
    """The reactor's worst delay while deliveries and heavy IMAP commands run for ``seconds``."""
    client = Raw(port)
    client.command(b"SELECT INBOX")
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + seconds
    commands = [b"UID FETCH 1:* (UID FLAGS)", b"FETCH 1:300 (BODY.PEEK[])", b"SEARCH BODY realistic"]
    done = 0
    while time.monotonic() < deadline:
        client.command(commands[done % len(commands)])
        done += 1
    probe.unlink(missing_ok=True)
    server.send_signal(signal.SIGUSR2)
    for _ in range(100):
        if probe.exists() and probe.read_text():
            break
        time.sleep(0.05)
    client.close()
    result: dict[str, float] = json.loads(probe.read_text())
    result["commands"] = done
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="3,000 messages, 2 rounds (CI)")
    parser.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "PROBE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve[0], int(options.serve[1]), options.serve[2])
        return
    if options.short:
        options.messages, options.rounds = 3000, 2
    count = options.messages
    tmp = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    os.chmod(tmp, 0o755)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        dovecot, dovecot_port = start_dovecot(tmp, count)
        servers.append(dovecot)
        ygbridge, ygbridge_port, probe = start_ygbridge(tmp, count)
        servers.append(ygbridge)
        ports = {"dovecot": dovecot_port, "ygbridge": ygbridge_port}
        for port in ports.values():
            warm(port, count)
        print(f"{count} messages in INBOX on both, ready in {time.monotonic() - started:.0f} s")
        results: dict[str, dict[str, list[float]]] = {}
        loads: dict[str, list[float]] = {}
        for round_number in range(options.rounds):
            order = ["ygbridge", "dovecot"] if round_number % 2 else ["dovecot", "ygbridge"]
            for name, measure in figures(count).items():
                for server in order:
                    results.setdefault(name, {}).setdefault(server, []).append(measure(ports[server]))
                loads.setdefault(name, []).append(os.getloadavg()[0])
        print(f"{'figure':<42} {'ygbridge':>12} {'Dovecot':>12} {'ratio':>7}  load")
        for name, by_server in results.items():
            ours, theirs = statistics.median(by_server["ygbridge"]), statistics.median(by_server["dovecot"])
            rate = "msg/s" in name
            ratio = ours / theirs  # for APPEND a rate: above 1 is faster
            shown = (
                (f"{ours:9.0f}   ", f"{theirs:9.0f}   ")
                if rate
                else (
                    f"{ours * 1000:9.2f} ms",
                    f"{theirs * 1000:9.2f} ms",
                )
            )
            print(f"{name:<42} {shown[0]:>12} {shown[1]:>12} {ratio:7.2f}  {max(loads[name]):.2f}")
        lag = lag_probe(ygbridge, ygbridge_port, probe, seconds=3 if options.short else 10)
        print(
            f"reactor lag: worst {lag['worst_lag_ms']:.1f} ms of a 10 ms LoopingCall while "
            f"{lag['deliveries']:.0f} deliveries and {lag['commands']:.0f} heavy IMAP commands ran"
        )
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
