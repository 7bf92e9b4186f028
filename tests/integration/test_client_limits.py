"""What a client on the LAN, or a node on the mesh, can make a node spend (issue 7), on real nodes.

Node A (yggdrasil 0.5.12, a bridge with alice, bob and carol) and an attacker node X that runs
only a router, peered over a veth pair. A's client ports listen on loopback and on A's veth
address, so X reaches them as a machine on the LAN would (from its veth address and from more
addresses added to it, one per "machine"), and A's port 25 over the mesh. Alice is the
legitimate user: while each attack runs she logs in on loopback and fetches the message that
waits in her INBOX, within :data:`LEGITIMATE_WITHIN`.

CPU is the bridge's CPU time over the attack (work done: a loaded machine barely changes it).
Memory is the growth of the bridge's peak RSS (VmHWM, reset through ``/proc/PID/clear_refs``
when the attack starts, so that no spike between samples is missed) over its RSS then. Each
budget counts the legitimate login's argon2id verification (:data:`ARGON2`: it holds 64 MiB
while it runs). The figures are printed (run with ``-s``) for SECURITY.md.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

import pytest

from ygbridge.limits import Limits

from . import harness
from .harness import IMAP_PORT, MESH_PORT, SUBMISSION_PORT
from .messages import fetch_body, make_message, message_index

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2", "carol": "carol-Secret-3"}
#: How long alice's login, SELECT and FETCH of her message may take while an attack runs.
LEGITIMATE_WITHIN = 1.0
#: The default [delivery] max_message_size.
MAX_SIZE = 32 * 1024 * 1024
#: [limits] mesh_bytes_per_hour for this module (the default is 512 MiB).
BYTES_PER_HOUR = 300_000
#: Addresses X adds to its veth, one "machine" on the LAN each.
SOURCES = 24
MiB = 1024 * 1024
#: What one argon2id verification holds while it runs (libsodium's interactive parameters).
ARGON2 = 64 * MiB
#: The bridge's CPU budget (seconds) for one attack of this module with alice's login (about 0.05 s
#: measured), and for the 20 wrong passwords, 20 argon2id verifications (about 1.1 s).
ATTACK_CPU = 2.0
PASSWORDS_CPU = 10.0
ATTACK_TIMEOUT = 60.0


@dataclass
class Site:
    lab: harness.Lab
    a: harness.Node
    x: harness.Node
    lan: str  # A's veth address: the client ports listen there too
    sources: list[str]  # X's addresses on the same link
    inbox: bytes  # the message in alice's INBOX
    inbox_uid: int

    def alice(self) -> str:
        return self.a.bridge.address_of("alice")

    def bob(self) -> str:
        return self.a.bridge.address_of("bob")

    def eve(self) -> str:
        """A sender on the attacker's node."""
        return f"eve@{harness.meshname_domain(self.x.address)}"


@pytest.fixture(scope="module")
def site(product: None, module_lab: harness.Lab) -> Site:
    a, x = module_lab.add_node("a", "0.5.12"), module_lab.add_node("x", "0.5.12")
    module_lab.connect(x, a)
    module_lab.start_routers()
    module_lab.wait_reachable(x, a)
    found = re.search(r"inet (10\.231\.\d+)\.2/", a.ns.run(["ip", "-4", "-o", "addr", "show"]).stdout)
    assert found is not None
    lan = f"{found[1]}.2"
    veth = re.search(
        rf"^\d+: ([^\s@]+)\S*\s+inet {re.escape(found[1])}\.1/",
        x.ns.run(["ip", "-4", "-o", "addr", "show"]).stdout,
        re.M,
    )
    assert veth is not None
    sources = [f"{found[1]}.{100 + n}" for n in range(SOURCES)]
    for address in sources:
        x.ns.run(["ip", "addr", "add", f"{address}/24", "dev", veth[1]])
    a.bridge.configure(
        imap={"listen": f"tcp:{IMAP_PORT}:interface=127.0.0.1 tcp:{IMAP_PORT}:interface={lan}"},
        submission={
            "listen": f"tcp:{SUBMISSION_PORT}:interface=127.0.0.1 tcp:{SUBMISSION_PORT}:interface={lan}"
        },
        limits={"mesh_bytes_per_hour": str(BYTES_PER_HOUR)},
    )
    a.bridge.setup(users=PASSWORDS)
    a.bridge.start()
    alice = a.bridge.address_of("alice")
    message, message_id = make_message(alice, [alice], "waiting for alice", "read me while they attack")
    with a.bridge.imap(login=("alice", PASSWORDS["alice"])) as imap:
        assert imap.append("INBOX", None, None, message)[0] == "OK"
        imap.select("INBOX")
        uid = message_index(imap)[message_id]
    return Site(module_lab, a, x, lan, sources, message, uid)


# ------------------------------------------------------------------ the legitimate user and memory


def legitimate(site: Site) -> float:
    """Seconds for alice on loopback to connect, log in, SELECT INBOX and fetch her message."""
    started = time.monotonic()
    with site.a.bridge.imap(login=("alice", PASSWORDS["alice"])) as imap:
        assert imap.select("INBOX")[0] == "OK"
        assert fetch_body(imap, site.inbox_uid) == site.inbox
        return time.monotonic() - started


def bridge_cost(site: Site) -> harness.Cost:
    """What A's bridge costs over a ``with`` block (peak RSS growth, CPU)."""
    return harness.Cost(site.a.bridge.current().process.pid)


# ------------------------------------------------------------------ the attacker's connections


class Wire:
    """A raw connection from X's namespace (from ``source``, if given), read a line at a time."""

    def __init__(
        self, site: Site, host: str, port: int, source: str | None = None, receive_buffer: int = 0
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with site.x.ns.entered():
            sock = socket.socket(family, socket.SOCK_STREAM)
            if receive_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(ATTACK_TIMEOUT)
            if source is not None:
                sock.bind((source, 0))
            sock.connect((host, port))
        self.sock: socket.socket = sock
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line with its CRLF; what is left (maybe b"") once the server has closed."""
        while (end := self.buffer.find(b"\n")) < 0:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                rest = bytes(self.buffer)
                self.buffer.clear()
                return rest
            self.buffer += chunk
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def until(self, prefix: bytes) -> bytes:
        """Lines up to the first that starts with ``prefix`` (the tagged answer), all of them."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(prefix) or not line:
                return b"".join(lines)

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        data = bytes(self.buffer)
        self.buffer.clear()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while chunk := self.sock.recv(1 << 16):
                data += chunk
        return data

    def starttls(self) -> None:
        """IMAP STARTTLS (the server's certificate is self-signed: not verified)."""
        self.send(b"t STARTTLS\r\n")
        assert self.line().startswith(b"t OK "), "STARTTLS refused"
        self.sock = harness.insecure_tls().wrap_socket(self.sock)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: object, tb: TracebackType | None) -> None:
        self.close()


def imap_from_lan(site: Site, user: str | None = None, source: str | None = None, **kwargs: int) -> Wire:
    """An IMAP connection from X to A's LAN address, after STARTTLS (and LOGIN as ``user``)."""
    wire = Wire(site, site.lan, IMAP_PORT, source, **kwargs)
    assert wire.line().startswith(b"* OK ")
    wire.starttls()
    if user is not None:
        wire.send(b'l LOGIN %s "%s"\r\n' % (user.encode(), PASSWORDS[user].encode()))
        assert wire.until(b"l ").splitlines()[-1].startswith(b"l OK "), f"{user} cannot log in"
    return wire


def in_thread(work: Callable[[], object]) -> Callable[[], object]:
    """Run ``work`` in a thread; the returned function joins it (bounded) and returns its result."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> object:
        thread.join(ATTACK_TIMEOUT)
        assert not thread.is_alive(), "the attack did not end"
        if errors:
            raise errors[0]
        return result[0]

    return join


def push(wire: Wire, total: int, chunk: bytes = b"A" * (1 << 20)) -> int:
    """Send up to ``total`` octets without a line end; how many the connection took before it closed."""
    sent = 0
    try:
        while sent < total:
            wire.send(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, TimeoutError):
        pass
    return sent


# ------------------------------------------------------------------ APPEND, FETCH, logins


CUT_OFF = b"BAD Command line too long (at most 65536 octets)\r\n* BYE Command line too long\r\n"


def test_a_400_mb_append_is_refused_before_its_literal(site: Site) -> None:
    """APPENDLIMIT is advertised; APPEND of 400 MB gets NO [TOOBIG] without a continuation, and
    an attacker who sends the literal anyway is cut off at the command line limit."""
    toobig = b"NO [TOOBIG] messages are limited to %d octets here\r\n" % MAX_SIZE
    announced = 400 * 1000 * 1000
    with imap_from_lan(site, "bob") as bob, bridge_cost(site) as cost:
        bob.send(b"c CAPABILITY\r\n")
        assert b" APPENDLIMIT=%d" % MAX_SIZE in bob.until(b"c ").splitlines()[0]
        bob.send(b"a APPEND INBOX {%d}\r\n" % announced)
        assert bob.line() == b"a " + toobig  # no "+": the client sends nothing of it
        bob.send(b"n NOOP\r\n")
        assert bob.until(b"n ").endswith(b"n OK NOOP completed\r\n")
        sent = in_thread(lambda: push(bob, announced))  # ...sends it all the same
        took = legitimate(site)
        pushed = sent()
        answer = bob.rest()
    # cut off at the line limit (or reset, with the answer unread, as the rest was refused)
    assert not answer or answer.endswith(CUT_OFF), answer[:200]
    assert isinstance(pushed, int) and pushed < 64 * MiB
    with imap_from_lan(site, "bob") as bob:  # LITERAL+: the bridge would have to read it all
        bob.send(b"b APPEND INBOX {%d+}\r\n" % announced)
        assert bob.rest() == b"b " + toobig + b"* BYE Literal too long to skip\r\n"
    harness.figure("append 400 MB: octets the bridge took before closing (MiB)", round(pushed / MiB, 1))
    harness.figure("append 400 MB: cost", cost)
    harness.figure("append 400 MB: alice's login and fetch meanwhile (s)", round(took, 3))
    assert cost.growth < ARGON2 + 16 * MiB
    cost.within(ATTACK_CPU, "the attack")
    assert took < LEGITIMATE_WITHIN


#: The messages a non-reading client asks for: 120 MiB in all.
BIG = 10 * MiB
BIG_COUNT = 12


def big_message(site: Site, n: int) -> bytes:
    header = f"From: {site.bob()}\r\nTo: {site.bob()}\r\nSubject: big {n}\r\n\r\n".encode()
    line = b"%-76d\r\n" % n
    return header + line * ((BIG - len(header)) // len(line))


def send_queue(site: Site, wire: Wire) -> int:
    """Octets A's kernel holds unsent on the IMAP connection of ``wire``."""
    port = wire.sock.getsockname()[1]
    text = site.a.ns.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{IMAP_PORT} and dport = :{port} )"], timeout=10
    ).stdout.split()
    return int(text[1]) if len(text) >= 2 else 0


def test_fetch_to_a_client_that_does_not_read(site: Site) -> None:
    """FETCH 1:* BODY.PEEK[] of 12 x 10 MiB by a client that reads nothing: the bridge holds about
    one message's answer, not 120 MiB; alice is served meanwhile; the client then gets it all."""
    messages = [big_message(site, n) for n in range(BIG_COUNT)]
    with site.a.bridge.imap(login=("bob", PASSWORDS["bob"])) as imap:
        assert imap.create("Big")[0] == "OK"
        for message in messages:
            assert imap.append("Big", None, None, message)[0] == "OK"
    with imap_from_lan(site, "bob", receive_buffer=64 * 1024) as bob:
        bob.send(b"s SELECT Big\r\n")
        assert bob.until(b"s ").splitlines()[-1].startswith(b"s OK")
        with bridge_cost(site) as cost:  # the attack alone: alice's argon2id comes after
            bob.send(b"f FETCH 1:* BODY.PEEK[]\r\n")
            harness.wait_until(
                lambda: send_queue(site, bob) > 0, timeout=30, what="the bridge's writes to stall"
            )
            harness.holds_for(
                lambda: send_queue(site, bob) > 0, duration=2.0, what="the client still not reading"
            )
        took = legitimate(site)
        assert send_queue(site, bob) > 0
        answer = bytearray()
        while not answer.endswith(b"f OK FETCH completed\r\n"):
            chunk = bob.sock.recv(1 << 20)
            assert chunk, "closed before the FETCH completed"
            answer += chunk
    for n, message in enumerate(messages, start=1):
        start = answer.find(b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(message)))
        assert start >= 0, n
        body = answer.index(b"\r\n", start) + 2
        assert answer[body : body + len(message)] == message
    harness.figure("fetch 12 x 10 MiB to a non-reader: cost while stalled", cost)
    harness.figure("fetch 12 x 10 MiB to a non-reader: alice's login and fetch meanwhile (s)", round(took, 3))
    assert cost.growth < 48 * MiB
    cost.within(ATTACK_CPU, "the attack")
    assert took < LEGITIMATE_WITHIN


def test_twenty_wrong_passwords_at_once_from_twenty_machines(site: Site) -> None:
    """Each from its own LAN address, so that the login throttle lets every one be checked:
    argon2id runs ``password_checks`` (2) at a time, whatever the number waiting."""
    count = 20
    wires = [imap_from_lan(site, source=source) for source in site.sources[:count]]
    events = site.a.bridge.current().mark()
    try:
        with bridge_cost(site) as cost:
            for n, wire in enumerate(wires):
                wire.send(b'l LOGIN carol "wrong-%d"\r\n' % n)
            took = legitimate(site)
            answers = [wire.until(b"l ") for wire in wires]
    finally:
        for wire in wires:
            wire.close()
    assert all(answer.startswith(b"l NO [AUTHENTICATIONFAILED]") for answer in answers), answers
    failed = site.a.bridge.current().matching("login.failed", since=events)
    assert sorted(event["source"] for event in failed) == sorted(site.sources[:count])  # all checked
    harness.figure("20 wrong passwords at once: cost", cost)
    harness.figure("20 wrong passwords at once: alice's login and fetch meanwhile (s)", round(took, 3))
    assert cost.growth < 2 * ARGON2 + 32 * MiB
    cost.within(PASSWORDS_CPU, "the attack")
    assert took < LEGITIMATE_WITHIN


# ------------------------------------------------------------------ connections and lines


def test_the_21st_connection_from_one_lan_address_is_refused(site: Site) -> None:
    """``connections_per_client_ip`` (20) counts IMAP and submission together; another address
    and loopback are not affected, and a slot freed is free again."""
    per_ip = Limits().connections_per_client_ip
    source = site.sources[20]
    held = [Wire(site, site.lan, IMAP_PORT if n % 2 else SUBMISSION_PORT, source) for n in range(per_ip)]
    try:
        with bridge_cost(site) as cost:
            assert sorted(wire.line()[:4] for wire in held) == sorted([b"* OK", b"220 "] * (per_ip // 2))
            with Wire(site, site.lan, IMAP_PORT, source) as imap:
                assert imap.rest() == b"* BYE Too many connections\r\n"
            with Wire(site, site.lan, SUBMISSION_PORT, source) as smtp:
                assert smtp.rest() == b"421 4.7.0 Too many connections\r\n"
            with Wire(site, site.lan, IMAP_PORT, site.sources[21]) as other:
                assert other.line().startswith(b"* OK ")
            took = legitimate(site)
    finally:
        for wire in held:
            wire.close()

    def admitted() -> bool:
        with Wire(site, site.lan, IMAP_PORT, source) as again:
            return again.line().startswith(b"* OK ")

    harness.wait_until(admitted, timeout=10, what="a slot to be free again")
    harness.figure("21st connection: cost", cost)
    harness.figure("21st connection: alice's login and fetch meanwhile (s)", round(took, 3))
    assert cost.growth < ARGON2 + 16 * MiB
    cost.within(ATTACK_CPU, "the attack")
    assert took < LEGITIMATE_WITHIN


TOO_LONG = b"500 5.5.2 Line too long (limit 2048 octets)\r\n"


def test_the_submission_line_limit_before_auth(site: Site) -> None:
    """From the LAN, before STARTTLS and AUTH: two overlong lines get ``500 5.5.2``; the third
    offence, an endless line, gets ``421 4.7.0`` and the connection is closed."""
    with Wire(site, site.lan, SUBMISSION_PORT, site.sources[22]) as wire:
        assert wire.line().startswith(b"220 ")
        wire.send(b"EHLO x.test\r\n")
        assert wire.until(b"250 ").startswith(b"250-")
        for _ in range(Limits().smtp_line_offences - 1):
            wire.send(b"AUTH PLAIN " + b"x" * 3000 + b"\r\n")
            assert wire.line() == TOO_LONG
        wire.send(b"NOOP\r\n")
        assert wire.line().startswith(b"250 ")
        with bridge_cost(site) as cost:
            sent = in_thread(lambda: push(wire, 256 * MiB))
            took = legitimate(site)
            pushed = sent()
            answer = wire.rest()
    assert isinstance(pushed, int) and pushed < 64 * MiB
    assert not answer or re.fullmatch(
        rb"421 4\.7\.0 \S+ Too many overlong lines, closing connection\r\n", answer
    )
    harness.figure("submission endless line: octets taken before closing (MiB)", round(pushed / MiB, 1))
    harness.figure("submission endless line: cost", cost)
    harness.figure("submission endless line: alice's login and fetch meanwhile (s)", round(took, 3))
    assert cost.growth < ARGON2 + 16 * MiB
    cost.within(ATTACK_CPU, "the attack")
    assert took < LEGITIMATE_WITHIN


# ------------------------------------------------------------------ numbers, nesting, mesh quota


@contextlib.contextmanager
def mesh_client(site: Site) -> Iterator[smtplib.SMTP]:
    """An SMTP client on X talking to A's port 25 over the mesh (EHLO done)."""
    with site.x.ns.entered():
        client = smtplib.SMTP(str(site.a.address), MESH_PORT, timeout=30)
    try:
        client.ehlo("x.test")
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def test_size_of_21_to_2000_digits_gets_501_on_the_mesh(site: Site) -> None:
    limit = Limits().smtp_line
    with mesh_client(site) as client:
        prefix = f"MAIL FROM:<{site.eve()}> SIZE="
        longest = limit - len(prefix) - 2  # the line with its CRLF is exactly the limit
        for path, digits in [(site.eve(), n) for n in (21, 22, 100, 500, 1000, longest)] + [("", 2000)]:
            code, text = client.docmd(f"MAIL FROM:<{path}> SIZE={'9' * digits}")
            assert (code, text[:6]) == (501, b"5.5.4 "), (digits, text)
        code, text = client.docmd(f"{prefix}{'9' * (longest + 1)}")
        assert (code, text[:6]) == (500, b"5.5.2 ")
        took = legitimate(site)
    harness.figure("SIZE digits: the longest within the line limit", longest)
    harness.figure("SIZE digits: alice's login and fetch after (s)", round(took, 3))
    assert took < LEGITIMATE_WITHIN


def test_deep_search_nesting_and_huge_numbers_are_bad_and_write_no_log(site: Site) -> None:
    """1,000 levels of parentheses, NOT and OR, and a 5,000-digit literal length, from the LAN:
    each is BAD, and the bridge writes (almost) nothing to its log about it."""
    run = site.a.bridge.current()
    with imap_from_lan(site, "bob") as bob:
        bob.send(b"s SELECT INBOX\r\n")
        assert bob.until(b"s ").splitlines()[-1].startswith(b"s OK")
        lines_before = len(run.lines)
        for tag, search in (
            (b"p", b"(" * 1000 + b"ALL" + b")" * 1000),
            (b"n", b"NOT " * 1000 + b"ALL"),
            (b"o", b"OR ALL " * 1000 + b"ALL"),
            (b"k", b"SEEN " * 5000 + b"ALL"),
        ):
            bob.send(tag + b" SEARCH " + search + b"\r\n")
            answer = bob.until(tag + b" ")
            assert answer.startswith(tag + b" BAD "), answer
        took = legitimate(site)
        bob.send(b"a APPEND INBOX {" + b"9" * 5000 + b"}\r\n")
        assert (
            bob.rest()
            == b"a BAD Literal length out of range\r\n* BYE Cannot find the end of that literal\r\n"
        )
    # a barrier: a failed login from another address is logged after all of the above
    with imap_from_lan(site, source=site.sources[23]) as barrier:
        events = run.mark()
        barrier.send(b'l LOGIN nobody "x"\r\n')
        run.wait_event("login.failed", 30, since=events)
    logged = [line for line in run.lines[lines_before:] if '"login.failed"' not in line]
    harness.figure("deep SEARCH and 5,000 digits: log lines written", len(logged))
    harness.figure("deep SEARCH: alice's login and fetch meanwhile (s)", round(took, 3))
    assert len(logged) <= 3, logged
    assert took < LEGITIMATE_WITHIN


def test_mesh_bytes_per_hour_over_the_mesh(site: Site) -> None:
    """``mesh_bytes_per_hour`` (300,000 here): a SIZE over it is refused at MAIL, and the message
    that would pass it after DATA; both ``452 4.7.0`` naming the key. The rest reaches bob."""
    body = "x" * 76 + "\n"
    sizes = []
    with mesh_client(site) as client:
        code, text = client.mail(site.eve(), [f"SIZE={BYTES_PER_HOUR + 1}"])
        assert (code, text[:6]) == (452, b"4.7.0 ") and b"mesh_bytes_per_hour" in text, text
        client.rset()
        replies = []
        ids = []
        for n in range(3):
            message, message_id = make_message(site.eve(), [site.bob()], f"bulk {n}", body * 1500)
            sizes.append(len(message))
            ids.append(message_id)
            assert client.mail(site.eve())[0] == 250
            assert client.rcpt(site.bob())[0] == 250
            replies.append(client.data(message))
        took = legitimate(site)
    assert [code for code, _ in replies] == [250, 250, 452], replies
    assert replies[2][1].startswith(b"4.7.0 ") and b"mesh_bytes_per_hour" in replies[2][1]
    assert 2 * sizes[0] <= BYTES_PER_HOUR < 3 * sizes[0]
    with site.a.bridge.imap(login=("bob", PASSWORDS["bob"])) as imap:
        imap.select("INBOX")
        index = message_index(imap)
    assert ids[0] in index and ids[1] in index and ids[2] not in index
    harness.figure("mesh bytes per hour: sizes", sizes)
    harness.figure("mesh bytes per hour: alice's login and fetch after (s)", round(took, 3))
    assert took < LEGITIMATE_WITHIN
