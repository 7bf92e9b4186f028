"""Independent IMAP clients against a real bridge: imapclient in a Thunderbird-like session, mbsync.

One node (yggdrasil 0.5.12 in a namespace, ygbridge under twistd) with user alice; the clients
connect from inside the namespace to the IMAP listener on its loopback. mbsync (isync, C, no code
shared with imaplib) also logs in as dora, whose password holds ``"``, ``\\``, a space and
non-ASCII, through a relay that keeps what it sent, and mirrors a mailbox whose name holds them too.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from . import harness
from .messages import make_message, send

PASSWORD = "alice-Secret-1"
#: dora's password, and a mailbox name: the quoted-string specials, a space and non-ASCII.
ODD_PASSWORD = 'd"o\\ra pass wörd'
ODD_MAILBOX = 'Odd "quoted\\ Café'
#: The mailbox name as LIST returns it: modified UTF-7 (RFC 3501 5.1.3) in a quoted string.
ODD_MAILBOX_LISTED = b'"Odd \\"quoted\\\\ Caf&AOk-"'
#: Where the relay in front of the IMAP listener listens, on the node's [::1].
RELAY_PORT = 1144
IDLE_TIMEOUT = 15.0
MBSYNC_TIMEOUT = 60.0
CAPABILITIES = {
    b"IMAP4REV1",
    b"IDLE",
    b"NAMESPACE",
    b"UIDPLUS",
    b"MOVE",
    b"SPECIAL-USE",
    b"CHILDREN",
    b"ID",
    b"ENABLE",
    b"UNSELECT",
    b"LITERAL+",
}


@pytest.fixture(scope="module")
def node(product: None, module_lab: harness.Lab) -> harness.Node:
    node = module_lab.add_node("a", "0.5.12")
    module_lab.start_routers()
    # mbsync resolves with AI_ADDRCONFIG: in a namespace whose only IPv4 address is loopback's,
    # 127.0.0.1 does not resolve, ::1 does (the router's TUN has an IPv6 address).
    node.bridge.settings["imap"]["listen"] += f" tcp6:{harness.IMAP_PORT}:interface=\\:\\:1"
    node.bridge.setup(users={"alice": PASSWORD})
    node.bridge.start()
    return node


@contextlib.contextmanager
def imap(node: harness.Node, user: str = "alice", password: str = PASSWORD) -> Iterator[IMAPClient]:
    """imapclient logged in (as alice), its socket inside the node's namespace."""
    with node.ns.entered():
        client = IMAPClient("127.0.0.1", port=harness.IMAP_PORT, ssl=False, timeout=harness.CLIENT_TIMEOUT)
    client.normalise_times = False  # INTERNALDATE with its time zone
    try:
        if password.isascii():
            client.login(user, password)
        else:  # imaplib, under imapclient's LOGIN, sends only ASCII; SASL PLAIN carries UTF-8
            client.plain_login(user, password)
        yield client
    finally:
        with contextlib.suppress(IMAPClientError, OSError):
            client.logout()


def message(
    subject: str,
    body: str,
    *,
    date_header: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    alice: str = "alice@a.meship",
) -> tuple[bytes, str]:
    """A message from ``alice`` to herself (its Date replaced if ``date_header``) and its Message-ID."""
    raw, message_id = make_message(alice, [alice], subject, body, extra_headers=extra)
    if date_header:
        raw = re.sub(rb"^Date: [^\r]*", b"Date: " + date_header.encode(), raw, count=1, flags=re.M)
    return raw, message_id


def uid_of(client: IMAPClient, message_id: str) -> int:
    (uid,) = client.search(["HEADER", "Message-ID", message_id])
    return uid


def appended(response: bytes) -> tuple[int, int]:
    """(UIDVALIDITY, UID) of an APPEND's tagged response with APPENDUID (RFC 4315)."""
    match = re.search(rb"\[APPENDUID (\d+) (\d+)\]", response)
    assert match is not None, f"no APPENDUID in {response!r}"
    return int(match[1]), int(match[2])


def test_capabilities_id_and_namespace(node: harness.Node) -> None:
    with imap(node) as client:
        assert CAPABILITIES <= set(client.capabilities())
        assert client.id_({"name": "imapclient"}) == ((b"name", b"ygbridge"),)
        assert client.namespace().personal == (("", "/"),)
        assert client.find_special_folder(b"\\Sent") == "Sent"
        assert client.find_special_folder(b"\\Trash") == "Trash"
        assert {name for _, _, name in client.list_folders()} == {"INBOX", "Sent", "Drafts", "Trash", "Junk"}


def test_append_to_sent_with_appenduid(node: harness.Node) -> None:
    raw, message_id = message("a sent message", "Grüße from the Sent folder\n")
    when = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)
    with imap(node) as client:
        uidvalidity, uid = appended(client.append("Sent", raw, flags=[b"\\Seen"], msg_time=when))
        selected = client.select_folder("Sent")
        assert (selected[b"UIDVALIDITY"], selected[b"UIDNEXT"]) == (uidvalidity, uid + 1)
        fetched = client.fetch([uid], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])[uid]
        assert fetched[b"BODY[]"] == raw
        assert fetched[b"FLAGS"] == (b"\\Recent", b"\\Seen")  # this session selected it first
        assert fetched[b"INTERNALDATE"] == when
        assert uid_of(client, message_id) == uid


def test_search_by_dates_and_headers(node: harness.Node) -> None:
    old, old_id = message(
        "quarterly report",
        "numbers\n",
        date_header="Thu, 05 Jan 2023 09:00:00 +0000",
        extra=(("X-Project", "alpha"),),
    )
    new, new_id = message("Grüße zum Jahr", "words\n", extra=(("X-Project", "beta"),))
    with imap(node) as client:
        client.append("INBOX", old, msg_time=datetime(2023, 1, 5, 9, tzinfo=UTC))
        client.append("INBOX", new)
        with node.bridge.smtp(login=("alice", PASSWORD)) as smtp:  # delivered, not appended
            alice = node.bridge.address_of("alice")  # submission takes only her own From:
            delivered, delivered_id = message(
                "by submission", "hello\n", extra=(("X-Project", "alpha"),), alice=alice
            )
            send(smtp, alice, [alice], delivered)
        client.select_folder("INBOX")
        harness.wait_until(
            lambda: client.search(["HEADER", "Message-ID", delivered_id]), timeout=30, what="local delivery"
        )
        uids = {mid: uid_of(client, mid) for mid in (old_id, new_id, delivered_id)}
        assert client.search(["BEFORE", date(2024, 1, 1)]) == [uids[old_id]]
        assert set(client.search(["SINCE", date(2024, 1, 1)])) >= {uids[new_id], uids[delivered_id]}
        assert client.search(["SENTON", date(2023, 1, 5)]) == [uids[old_id]]
        assert sorted(client.search(["HEADER", "X-Project", "alpha"])) == sorted(
            [uids[old_id], uids[delivered_id]]
        )
        assert client.search(["HEADER", "X-Project", "alpha", "SENTSINCE", date(2024, 1, 1)]) == [
            uids[delivered_id]
        ]
        assert client.search(["SUBJECT", "grüße"], charset="UTF-8") == [uids[new_id]]  # sent as a literal
        assert client.search(["OR", "SUBJECT", "quarterly", "SUBJECT", "submission"]) == sorted(
            [uids[old_id], uids[delivered_id]]
        )
        assert client.search(["NOT", "HEADER", "X-Project", "", "NOT", "BEFORE", date(2024, 1, 1)]) == []


def idle_until(client: IMAPClient, wanted: Callable[[tuple[Any, ...]], bool], what: str) -> tuple[Any, ...]:
    """The first IDLE push ``wanted`` accepts, within IDLE_TIMEOUT."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        for response in client.idle_check(left):
            if wanted(response):
                return response
    raise AssertionError(f"no {what} pushed during IDLE within {IDLE_TIMEOUT:.0f}s")


def test_flags_move_to_trash_and_idle(node: harness.Node) -> None:
    raw, message_id = message("to be flagged, then trashed", "bye\n")
    with imap(node) as client, imap(node) as watcher:
        client.select_folder("INBOX")
        watcher.select_folder("INBOX")
        watcher.idle()
        try:
            _, uid = appended(client.append("INBOX", raw))
            seq, _ = idle_until(watcher, lambda push: push[1] == b"EXISTS", "EXISTS")
            # \Recent in the client's session only: it had INBOX selected first when the mail came
            recent = b"\\Recent"
            assert client.add_flags([uid], [b"\\Flagged", b"$Label"]) == {
                uid: (b"$Label", b"\\Flagged", recent)
            }
            assert client.remove_flags([uid], [b"$Label"]) == {uid: (b"\\Flagged", recent)}
            assert client.get_flags([uid]) == {uid: (b"\\Flagged", recent)}
            flagged = (seq, b"FETCH", (b"FLAGS", (b"\\Flagged",), b"UID", uid))
            idle_until(watcher, lambda push: push == flagged, "the flags left by remove_flags")
            client.move([uid], "Trash")
            assert client.search(["HEADER", "Message-ID", message_id]) == []
            idle_until(watcher, lambda push: push == (seq, b"EXPUNGE"), "EXPUNGE")
        finally:
            watcher.idle_done()
        client.select_folder("Trash")
        trashed = uid_of(client, message_id)
        assert client.get_flags([trashed]) == {trashed: (b"\\Flagged", b"\\Recent")}  # new in Trash
        client.delete_messages([trashed])
        client.uid_expunge([trashed])
        assert client.search(["HEADER", "Message-ID", message_id]) == []


MBSYNCRC = """\
IMAPAccount alice
Host ::1
Port {port}
User {user}
{password}
SSLType None
AuthMechs LOGIN
Timeout 30

IMAPStore remote
Account alice

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel mirror
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
"""


def as_mirrored(data: bytes) -> bytes:
    """A message as mbsync keeps it in a Maildir: LF line ends, its own X-TUID field left out."""
    return re.sub(rb"^X-TUID: [^\n]*\n", b"", data.replace(b"\r\n", b"\n"), flags=re.M)


def maildir_files(folder: Path) -> dict[str, Path]:
    """Message-ID -> file, for the messages of a Maildir folder."""
    found = {}
    for path in [*folder.glob("cur/*"), *folder.glob("new/*")]:
        match = re.search(rb"^Message-ID: (\S+)", path.read_bytes(), re.M | re.I)
        if match:
            found[match[1].decode()] = path
    return found


def maildir_flags(path: Path) -> str:
    return path.name.partition(":2,")[2]


def run_mbsync(node: harness.Node, rc: Path) -> str:
    """``mbsync -a -Dn`` with ``rc`` in the node's namespace; its output (the IMAP commands it sent,
    LOGIN masked), or AssertionError with the bridge's log."""
    try:
        result = node.ns.run(["mbsync", "-c", str(rc), "-a", "-Dn"], timeout=MBSYNC_TIMEOUT, check=False)
    except harness.HarnessError as exc:
        raise AssertionError(f"mbsync: {exc}\n{node.bridge.log()[-5000:]}") from None
    assert result.returncode == 0, f"mbsync exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_mbsync_mirrors_a_mailbox_both_ways(node: harness.Node, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        MBSYNCRC.format(port=harness.IMAP_PORT, user="alice", password=f"Pass {PASSWORD}", maildir=maildir)
    )

    def mbsync() -> None:
        run_mbsync(node, rc)

    on_server, server_id = message("written on the server", "first line\nsecond line\n")
    with imap(node) as client:
        _, server_uid = appended(client.append("INBOX", on_server, flags=[b"\\Seen"]))
    mbsync()
    inbox = maildir / "INBOX"
    local = maildir_files(inbox)
    assert as_mirrored(local[server_id].read_bytes()) == as_mirrored(on_server)
    assert maildir_flags(local[server_id]) == "S"
    assert {"Sent", "Trash", "Drafts", "Junk"} <= {path.name for path in maildir.iterdir()}

    on_client, client_id = message("written in the Maildir", "from mbsync\n")
    (inbox / "new" / "1700000000.42_1.client").write_bytes(as_mirrored(on_client))
    flagged = local[server_id].with_name(local[server_id].name.replace(":2,S", ":2,FS"))
    local[server_id].rename(flagged)
    mbsync()
    with imap(node) as client:
        client.select_folder("INBOX")
        client_uid = uid_of(client, client_id)
        uploaded = client.fetch([client_uid], ["BODY.PEEK[]"])[client_uid][b"BODY[]"]
        assert as_mirrored(uploaded) == as_mirrored(on_client)
        assert b"\n" not in uploaded.replace(b"\r\n", b"")  # stored with CRLF, as IMAP wants
        assert set(client.get_flags([server_uid])[server_uid]) == {b"\\Seen", b"\\Flagged"}
        client.add_flags([client_uid], [b"\\Answered"])
        client.create_folder("Projects/2024")
    mbsync()
    local = maildir_files(inbox)
    assert "R" in maildir_flags(local[client_id])
    assert (maildir / "Projects" / "2024" / "cur").is_dir()


class Relay:
    """A TCP relay on the node's [::1]:RELAY_PORT to its IMAP listener that keeps every byte the
    clients sent: what the server saw (mbsync's own trace masks LOGIN's arguments)."""

    def __init__(self, node: harness.Node) -> None:
        self.node = node
        self.sent = bytearray()
        with node.ns.entered():
            self._listener = socket.create_server(("::1", RELAY_PORT), family=socket.AF_INET6)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="imap-relay")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self.node.ns.entered():
                server = socket.create_connection(("127.0.0.1", harness.IMAP_PORT), timeout=MBSYNC_TIMEOUT)
            with client, server:
                back = threading.Thread(target=self._copy, args=(server, client, None), daemon=True)
                back.start()
                self._copy(client, server, self.sent)
                back.join(MBSYNC_TIMEOUT)

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record is not None:
                    record += data
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone would not)
        self._listener.close()
        self._thread.join(MBSYNC_TIMEOUT)


def imap_quoted(text: str) -> bytes:
    """``text`` as an IMAP quoted string (RFC 3501 section 9), its 8-bit bytes as they are."""
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def test_mbsync_logs_in_with_an_odd_password_and_mirrors_an_odd_mailbox(
    node: harness.Node, tmp_path: Path
) -> None:
    """isync quotes LOGIN's password itself (``\\"``, ``\\\\``, its UTF-8 as is) and uses mailbox
    names as LIST gives them: the Maildir folder is named by the modified UTF-7 name."""
    node.bridge.add_user("dora", ODD_PASSWORD)
    with imap(node, "dora", ODD_PASSWORD) as client:
        client.create_folder(ODD_MAILBOX)
        on_server = [
            message(f"odd {n}", f"in the odd mailbox {n}\n", alice="dora@a.meship") for n in range(2)
        ]
        uids = [appended(client.append(ODD_MAILBOX, raw))[1] for raw, _ in on_server]
    (tmp_path / "password").write_text(ODD_PASSWORD)  # mbsync reads it as bytes: UTF-8, no newline
    maildir = tmp_path / "mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    password = f'PassCmd "cat {tmp_path / "password"}"'
    rc.write_text(MBSYNCRC.format(port=RELAY_PORT, user="dora", password=password, maildir=maildir))
    relay = Relay(node)
    try:
        trace = run_mbsync(node, rc)
        folder = maildir / 'Odd "quoted\\ Caf&AOk-'  # the name LIST returns, as mbsync read it
        local = maildir_files(folder)
        assert {mid: as_mirrored(path.read_bytes()) for mid, path in local.items()} == {
            mid: as_mirrored(raw) for raw, mid in on_server
        }
        on_client, client_id = message("written in the odd Maildir", "from mbsync\n", alice="dora@a.meship")
        (folder / "new" / "1700000000.43_1.client").write_bytes(as_mirrored(on_client))
        first = local[on_server[0][1]]
        first.rename(first.with_name(first.name.replace(":2,", ":2,F")))
        trace += run_mbsync(node, rc)
    finally:
        relay.close()
    sent = bytes(relay.sent)
    assert sent.count(b' LOGIN "dora" ' + imap_quoted(ODD_PASSWORD) + b"\r\n") == 2
    assert "LOGIN <user> <pass>" in trace  # what mbsync's trace shows of it
    listed = ODD_MAILBOX_LISTED.decode("ascii")
    assert trace.count(f" SELECT {listed}\n") == 2 and sent.count(f" SELECT {listed}\r\n".encode()) == 2
    assert b" APPEND " + ODD_MAILBOX_LISTED + b" " in sent
    with imap(node, "dora", ODD_PASSWORD) as client:
        assert [name for _, _, name in client.list_folders(pattern="Odd*")] == [ODD_MAILBOX]
        client.select_folder(ODD_MAILBOX)
        assert sorted(client.search()) == [*uids, uid_of(client, client_id)]
        assert set(client.get_flags([uids[0]])[uids[0]]) - {b"\\Recent"} == {b"\\Flagged"}
        uploaded = client.fetch([uid_of(client, client_id)], ["BODY.PEEK[]"])
        assert as_mirrored(next(iter(uploaded.values()))[b"BODY[]"]) == as_mirrored(on_client)
