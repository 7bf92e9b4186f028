"""IMAP's grammar and bounds against a real bridge: imaplib and imapclient, and an attacker.

One node (yggdrasil 0.5.12 in a namespace, ygbridge under twistd): a user whose password holds
``"``, ``\\`` and a space logs in with both client libraries; a mailbox whose name holds ``"``,
``\\``, a space and non-ASCII is created, listed, selected and deleted by the name LIST returns;
and a 6,000-element UID set and a 200 KB line without CRLF are answered (or cut off) while
another client logs in and selects INBOX.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imap_utf7 import encode as modified_utf7

from . import harness

USER = "carol"
PASSWORD = 'c"a\\rol pass word'
MAILBOX = 'Odd "quoted\\ Café'
#: How long a legitimate login and SELECT may take while the attack runs (issue 7's proof).
LEGITIMATE_WITHIN = 1.0
ATTACK_TIMEOUT = 30.0
#: The bridge's CPU budget (seconds) for the attacks of the 6,000-range sets and the long line, with
#: the legitimate login's argon2id: 21-23 s for the sets alone before issue 7.
SETS_CPU = 5.0


@pytest.fixture(scope="module")
def node(product: None, module_lab: harness.Lab) -> harness.Node:
    node = module_lab.add_node("a", "0.5.12")
    module_lab.start_routers()
    node.bridge.setup(users={USER: PASSWORD})  # through `ygbridge user add --password-stdin`
    node.bridge.start()
    return node


@contextlib.contextmanager
def imapclient_session(node: harness.Node) -> Iterator[IMAPClient]:
    with node.ns.entered():
        client = IMAPClient("127.0.0.1", port=harness.IMAP_PORT, ssl=False, timeout=harness.CLIENT_TIMEOUT)
    try:
        client.login(USER, PASSWORD)
        yield client
    finally:
        with contextlib.suppress(IMAPClientError, OSError):
            client.logout()


def raw_socket(node: harness.Node) -> socket.socket:
    """A plain TCP connection to IMAP, greeting read."""
    with node.ns.entered():
        sock = socket.create_connection(("127.0.0.1", harness.IMAP_PORT), timeout=ATTACK_TIMEOUT)
    assert sock.recv(4096).startswith(b"* OK ")
    return sock


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_imaplib_logs_in_with_quote_and_backslash_in_the_password(node: harness.Node) -> None:
    with node.bridge.imap(login=(USER, PASSWORD)) as client:  # imaplib quotes and escapes it
        assert client.state == "AUTH"
    with node.bridge.imap() as client, pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, PASSWORD.replace("\\", ""))


def test_imapclient_mailbox_with_quote_backslash_space_and_non_ascii(node: harness.Node) -> None:
    with imapclient_session(node) as client:
        client.create_folder(MAILBOX)
        assert MAILBOX in [name for _, _, name in client.list_folders()]
        assert client.select_folder(MAILBOX)[b"EXISTS"] == 0
        client.close_folder()
        client.delete_folder(MAILBOX)
        assert MAILBOX not in [name for _, _, name in client.list_folders()]


def test_imaplib_mailbox_by_the_name_list_returns(node: harness.Node) -> None:
    wire = b'"' + modified_utf7(MAILBOX).replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    with node.bridge.imap(login=(USER, PASSWORD)) as client:
        assert client.create(wire.decode("ascii"))[0] == "OK"
        status, listed = client.list('""', '"Odd*"')
        assert status == "OK"
        (line,) = listed
        assert isinstance(line, bytes)
        name = re.fullmatch(rb'\(.*?\) "/" (.*)', line)
        assert name is not None and name[1] == wire
        assert client.select(name[1].decode("ascii"))[0] == "OK"
        client.close()
        assert client.delete(name[1].decode("ascii"))[0] == "OK"
        assert client.list('""', '"Odd*"')[1] == [None]


def test_attacks_are_answered_while_a_legitimate_client_logs_in(node: harness.Node) -> None:
    with imapclient_session(node) as client:
        for n in range(10):
            client.append("INBOX", b"Subject: %d\r\n\r\nbody\r\n" % n)
    uids = b",".join(b"%d" % n for n in range(1, 12001, 2))  # 6,000 ranges, a 36 KB line
    long_set = raw_socket(node)
    quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    long_set.sendall(f'a LOGIN {USER} "{quoted}"\r\n'.encode())
    assert read_until(long_set, b"\r\n").startswith(b"a OK ")
    long_set.sendall(b"s SELECT INBOX\r\n")
    read_until(long_set, b"SELECT completed\r\n")
    line = raw_socket(node)
    answers: dict[str, bytes] = {}

    def attack() -> None:
        long_set.sendall(b"f UID FETCH " + uids + b" (UID FLAGS)\r\nt UID SEARCH UID " + uids + b"\r\n")
        answers["sets"] = read_until(long_set, b"t OK SEARCH completed\r\n")
        try:
            line.sendall(b"x " + b"A" * 200_000)  # no CRLF
            answers["line"] = read_until(line, b"\0")  # until the server closes
        except (ConnectionResetError, BrokenPipeError):
            answers["line"] = b"(reset)"  # closed with the rest of the line unread

    attacker = threading.Thread(target=attack, daemon=True)
    with harness.Cost(node.bridge.current().process.pid) as cost:
        attacker.start()
        started = time.monotonic()
        with node.bridge.imap(login=(USER, PASSWORD)) as client:
            assert client.select("INBOX")[0] == "OK"
        legitimate = time.monotonic() - started
        attacker.join(ATTACK_TIMEOUT)
    harness.figure("long sets and line: legitimate login + SELECT meanwhile (s)", round(legitimate, 3))
    harness.figure("long sets and line: cost, the login's argon2id included", cost)
    assert not attacker.is_alive(), "the attacks were not answered"
    long_set.close()
    line.close()
    assert answers["sets"].count(b" FETCH (UID ") == 5
    assert b"f OK FETCH completed\r\n* SEARCH 1 3 5 7 9\r\nt OK SEARCH completed\r\n" in answers["sets"]
    assert answers["line"] in (
        b"x BAD Command line too long (at most 65536 octets)\r\n* BYE Command line too long\r\n",
        b"(reset)",
    )
    assert legitimate < LEGITIMATE_WITHIN, f"login and SELECT took {legitimate:.2f} s during the attack"
    cost.within(SETS_CPU, "the long sets and the long line")


def test_recent_is_in_exactly_one_of_two_imaplib_sessions(node: harness.Node) -> None:
    """RFC 3501 2.3.2 with two real clients: the first SELECT gets \\Recent, EXAMINE and STATUS
    do not take it, and mail arriving while both have the mailbox selected is recent in one."""
    login = (USER, PASSWORD)
    box = "RecentBox"

    def recent(client: imaplib.IMAP4) -> list[bytes | None]:
        return client.response("RECENT")[1]

    with node.bridge.imap(login=login) as first, node.bridge.imap(login=login) as second:
        assert first.create(box)[0] == "OK"
        for n in range(2):
            assert first.append(box, None, None, b"Subject: %d\r\n\r\nbody\r\n" % n)[0] == "OK"
        assert second.status(box, "(MESSAGES RECENT)")[1] == [b'"RecentBox" (MESSAGES 2 RECENT 2)']
        assert second.select(box, readonly=True)[0] == "OK" and recent(second) == [b"2"]
        assert second.fetch("1:2", "(FLAGS)")[1] == [b"1 (FLAGS ())", b"2 (FLAGS ())"]
        assert first.select(box)[0] == "OK" and recent(first) == [b"2"]
        assert second.select(box)[0] == "OK" and recent(second) == [b"0"]
        assert first.fetch("1:2", "(FLAGS)")[1] == [b"1 (FLAGS (\\Recent))", b"2 (FLAGS (\\Recent))"]
        assert second.fetch("1:2", "(FLAGS)")[1] == [b"1 (FLAGS ())", b"2 (FLAGS ())"]
        assert first.search(None, "RECENT")[1] == [b"1 2"] and second.search(None, "NEW")[1] == [b""]
        with node.bridge.imap(login=login) as third:  # mail arrives while both have it selected
            assert third.append(box, None, None, b"Subject: 3\r\n\r\nbody\r\n")[0] == "OK"
        first.noop(), second.noop()
        assert recent(first) == [b"3"] and recent(second) == [None]
        assert first.search(None, "NEW")[1] == [b"1 2 3"] and second.search(None, "OLD")[1] == [b"1 2 3"]
        assert second.status(box, "(RECENT)")[1] == [b'"RecentBox" (RECENT 0)']
