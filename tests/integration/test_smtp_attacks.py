"""The mesh SMTP port under attack, on real nodes: a third node that runs only a router (M)
connects to B's port 25 from its namespace while A and B exchange mail as usual.

The figures each test measures (RSS, CPU, delivery time) are printed for SECURITY.md; the
assertions are on behaviour, memory and CPU seconds (work done, which a loaded machine barely
changes), never on wall time.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from . import harness
from .messages import check_delivered, fetch_body, idle_until, make_message, message_index, send

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-3"}
MESSAGES_PER_HOUR = 6
LINE_ATTACK = 60 * 1024 * 1024
#: B's CPU budget for the endless lines (seconds): about 0.05 s are spent; 64 s before the issue.
LINE_ATTACK_CPU = 5.0
DELIVERY_TIMEOUT = 30.0


@dataclass
class Lab:
    lab: harness.Lab
    a: harness.Node
    b: harness.Node
    m: harness.Node

    @property
    def bob(self) -> str:
        return self.b.bridge.address_of("bob")

    @property
    def eve(self) -> str:
        return f"eve@{harness.meshname_domain(self.m.address)}"


@pytest.fixture(scope="module")
def nodes(product: None, module_lab: harness.Lab) -> Iterator[Lab]:
    a, b, m = (module_lab.add_node(name) for name in ("a", "b", "m"))
    module_lab.connect(a, b)
    module_lab.connect(m, b)
    module_lab.start_routers()
    module_lab.wait_reachable(a, b)
    module_lab.wait_reachable(m, b)
    b.bridge.configure(limits={"mesh_messages_per_hour": str(MESSAGES_PER_HOUR)})
    a.bridge.setup(users={"alice": PASSWORDS["alice"]})
    b.bridge.setup(users={"bob": PASSWORDS["bob"]})
    a.bridge.start()
    b.bridge.start()
    yield Lab(module_lab, a, b, m)


@contextlib.contextmanager
def mesh_client(nodes: Lab) -> Iterator[smtplib.SMTP]:
    """An SMTP client on M talking to B's port 25 over the mesh (EHLO done)."""
    with nodes.m.ns.entered():
        client = smtplib.SMTP(str(nodes.b.address), harness.MESH_PORT, timeout=30)
    try:
        client.ehlo("m.test")
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


#: The attacker, a process of its own in M's namespace (so that it competes with the legitimate
#: clients for nothing but the mesh): connections that each send one endless line to B's port 25,
#: one JSON line per connection (octets the sockets accepted, B's replies) until it is terminated.
ATTACKER = r"""
import json, socket, sys
host, port, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = b"A" * 65536
while True:
    with socket.create_connection((host, port), timeout=30) as sock:
        replies = sock.recv(4096)
        sock.sendall(chunk[:2100])  # just past the 2 KiB line limit: one 500
        replies += sock.recv(4096)
        sent = 2100
        try:
            while sent < limit:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.settimeout(5)
            replies += sock.recv(4096)
        except OSError:
            pass  # closed by B (a reset: what B did not read is refused)
        try:
            sock.settimeout(1)
            replies += sock.recv(4096)
        except OSError:
            pass
    print(json.dumps({"sent": sent, "replies": replies.decode("ascii", "replace")}), flush=True)
"""


class LineAttack:
    """The attacker process on M and what it reports."""

    def __init__(self, nodes: Lab) -> None:
        argv = [
            sys.executable,
            "-c",
            ATTACKER,
            str(nodes.b.address),
            str(harness.MESH_PORT),
            str(LINE_ATTACK),
        ]
        self.process = nodes.m.ns.popen(argv, stdout=subprocess.PIPE, text=True)
        self.results: list[tuple[int, str]] = []
        self._reader = threading.Thread(target=self._read, name="line-attack", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            result = json.loads(line)
            self.results.append((result["sent"], result["replies"]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._reader.join(30)


def _deliver_during_idle(nodes: Lab, imap: imaplib.IMAP4, subject: str) -> float:
    """Seconds from alice's submission on A until bob's IDLE on B shows it; checks it is readable."""
    message, message_id = make_message(nodes.a.bridge.address_of("alice"), [nodes.bob], subject, "hi")

    def submit() -> None:
        with nodes.a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
            send(smtp, nodes.a.bridge.address_of("alice"), [nodes.bob], message)

    started = time.monotonic()
    idle_until(imap, lambda line: b"EXISTS" in line, timeout=DELIVERY_TIMEOUT, then=submit)
    took = time.monotonic() - started
    stored = fetch_body(imap, message_index(imap)[message_id])
    check_delivered(stored, message, received=2, return_path=nodes.a.bridge.address_of("alice"))
    return took


def test_an_endless_line_is_cut_off_while_mail_flows(nodes: Lab) -> None:
    pid = int(nodes.b.bridge.pidfile.read_text())
    rss: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            rss.append(harness.status_bytes(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, name="rss", daemon=True)
    # bob logs in first: argon2id takes 64 MiB for a moment, which is not the attack's doing
    with nodes.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        imap.select("INBOX")
        quiet = _deliver_during_idle(nodes, imap, "before")
        rss_before, cpu_before = harness.status_bytes(pid, "VmRSS"), harness.cpu_seconds(pid)
        sampler.start()
        attack = LineAttack(nodes)
        try:
            harness.wait_until(lambda: attack.results, timeout=60, what="the first attack connection to end")
            delivered = _deliver_during_idle(nodes, imap, "meanwhile")
            harness.wait_until(
                lambda: sum(sent for sent, _ in attack.results) >= LINE_ATTACK,
                timeout=120,
                what=f"the attacker to push {LINE_ATTACK} octets in all",
            )
        finally:
            attack.stop()
            sampling.set()
            sampler.join(10)
    connections = len(attack.results)
    for sent, replies in attack.results:
        assert sent < LINE_ATTACK, "B kept reading an endless line"
        assert "\r\n500 5.5.2 Line too long" in replies, replies
    cpu_after, peak = harness.cpu_seconds(pid), max(rss)
    print(
        f"\nendless-line attack: {sum(s for s, _ in attack.results) >> 20} MiB pushed over {connections} "
        "connections, each closed by B after <= "
        f"{max(s for s, _ in attack.results)} octets accepted by the sockets; B RSS {rss_before >> 20} MiB "
        f"before, at most {peak >> 20} MiB during ({len(rss)} samples), CPU {cpu_after - cpu_before:.2f} s; "
        f"a legitimate A->B message reached bob's IDLE in {quiet:.3f} s before and {delivered:.3f} s during"
    )
    assert peak - rss_before < 16 * 1024 * 1024
    assert cpu_after - cpu_before < LINE_ATTACK_CPU, "the endless lines cost B more CPU than their budget"


def test_recipients_past_100_get_452(nodes: Lab) -> None:
    message, message_id = make_message(nodes.eve, [nodes.bob], "many recipients", "hi")
    with mesh_client(nodes) as client:
        assert client.mail(nodes.eve)[0] == 250
        codes = [client.rcpt(nodes.bob) for _ in range(150)]
        assert [code for code, _ in codes] == [250] * 100 + [452] * 50
        assert codes[-1][1].startswith(b"4.5.3 ")
        assert client.data(message)[0] == 250
    with nodes.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        harness.wait_until(lambda: message_index(imap).get(message_id), timeout=10, what=message_id)


def test_unknown_mail_parameters_get_555(nodes: Lab) -> None:
    with mesh_client(nodes) as client:
        for parameter in ("XVERP", "FOO=bar", "AUTH=<>"):
            code, text = client.docmd(f"MAIL FROM:<{nodes.eve}> {parameter}")
            assert (code, text[:6]) == (555, b"5.5.4 "), (parameter, code, text)
        code, text = client.docmd(f"MAIL FROM:<{nodes.eve}> SIZE={'9' * 5000}")
        assert code == 500 and text.startswith(b"5.5.2 ")  # a 5,000-digit SIZE: longer than a line
        code, text = client.docmd(f"MAIL FROM:<{nodes.eve}> SIZE={'9' * 500}")
        assert (code, text[:6]) == (501, b"5.5.4 ")


def test_bdat_chunks_from_another_mta(nodes: Lab) -> None:
    """CHUNKING (RFC 3030), pipelined as an MTA sends it: the chunks are stored as sent."""
    message, message_id = make_message(nodes.eve, [nodes.bob], "chunked", ".a dot\nand more")
    half = len(message) // 2
    with mesh_client(nodes) as client:
        assert client.has_extn("chunking")
        client.send(
            f"MAIL FROM:<{nodes.eve}>\r\nRCPT TO:<{nodes.bob}>\r\nBDAT {half}\r\n".encode()
            + message[:half]
            + f"BDAT {len(message) - half} LAST\r\n".encode()
            + message[half:]
        )
        replies = [client.getreply() for _ in range(4)]
        assert [code for code, _ in replies] == [250, 250, 250, 250], replies
    with nodes.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        uid = harness.wait_until(lambda: message_index(imap).get(message_id), timeout=10, what=message_id)
        check_delivered(fetch_body(imap, uid), message, received=1, return_path=nodes.eve)


def test_the_hourly_quota_refuses_with_4xx_once_exceeded(nodes: Lab) -> None:
    replies = []
    with mesh_client(nodes) as client:
        for n in range(MESSAGES_PER_HOUR + 1):
            code, text = client.mail(nodes.eve)
            replies.append(code)
            if code != 250:
                break
            assert client.rcpt(nodes.bob)[0] == 250
            message, _ = make_message(nodes.eve, [nodes.bob], f"quota {n}", "hi")
            assert client.data(message)[0] == 250
    assert replies[-1] == 452 and set(replies[:-1]) == {250}, replies
    assert text.startswith(b"4.7.0 ") and b"mesh_messages_per_hour" in text, text
    # another node's allowance is its own
    message, message_id = make_message(nodes.a.bridge.address_of("alice"), [nodes.bob], "after", "hi")
    with nodes.a.bridge.smtp(("alice", PASSWORDS["alice"])) as smtp:
        send(smtp, nodes.a.bridge.address_of("alice"), [nodes.bob], message)
    with nodes.b.bridge.imap(("bob", PASSWORDS["bob"])) as imap:
        harness.wait_until(
            lambda: message_index(imap).get(message_id), timeout=DELIVERY_TIMEOUT, what=message_id
        )


def test_below_the_free_disk_floor_mail_waits_with_452(nodes: Lab) -> None:
    """Runs last: B restarts with a floor no disk can meet (min_free_disk = 1 EiB)."""
    nodes.b.bridge.configure(
        limits={"mesh_messages_per_hour": str(MESSAGES_PER_HOUR), "min_free_disk": "1073741824g"}
    )
    nodes.b.bridge.restart()
    with mesh_client(nodes) as client:
        code, text = client.mail(nodes.eve)
        assert (code, text[:6]) == (452, b"4.3.1 "), (code, text)
    with nodes.b.bridge.smtp(("bob", PASSWORDS["bob"])) as smtp:
        code, text = smtp.mail(nodes.bob)
        assert (code, text[:6]) == (452, b"4.3.1 "), (code, text)
