"""Delta Chat core, a real client, on two nodes of a real yggdrasil 0.5.12 mesh.

Each account is configured from the ``dclogin:`` link ygbridge prints: Alice's node A serves
implicit TLS (IMAP and submission), Bob's node B STARTTLS, both on the node's loopback inside its
namespace, where each deltachat-rpc-server runs. Delta Chat always encrypts (core 2.65 has
force_encryption): Alice and Bob meet by SecureJoin, over the mesh, before the tests.
Timings of every step are printed (pytest -rA shows them).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deltachat_rpc_client import Chat
from deltachat_rpc_client.const import MessageState

from . import harness
from .deltachat import ChatUser, Client

PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2", "carol": "carol-Secret-3"}
#: A password with IMAP's quoted-string specials, a space and non-ASCII (issue 8, item 1).
ODD_PASSWORD = 'd"o\\ra pass wörd'
TLS_IMAP, TLS_SUBMISSION = 1993, 1465
MESSAGE_TIMEOUT = 60.0
ATTACHMENT_TIMEOUT = 180.0
ATTACHMENT_SIZE = 10 * 1024 * 1024


@dataclass
class Chats:
    a: harness.Node
    b: harness.Node
    alice: ChatUser
    bob: ChatUser
    carol: ChatUser
    alice_to_bob: Chat
    bob_to_alice: Chat
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str, started: float) -> None:
        self.timings[step] = round(time.monotonic() - started, 2)
        print(f"[delta chat] {step}: {self.timings[step]:.2f}s")


def _link(output: str) -> str:
    [link] = [word for word in output.split() if word.startswith("dclogin:")]
    return link


def _secure_join(inviter: ChatUser, joiner: ChatUser) -> tuple[Chat, Chat]:
    """SecureJoin by QR code: the inviter's and the joiner's chat with each other."""
    joined = joiner.account.secure_join(inviter.account.get_qr_code())
    joiner.wait(
        lambda e: e["kind"] == "SecurejoinJoinerProgress" and e["progress"] == 1000, MESSAGE_TIMEOUT, "join"
    )
    invited = inviter.wait(
        lambda e: e["kind"] == "SecurejoinInviterProgress" and e["progress"] == 1000,
        MESSAGE_TIMEOUT,
        "invite",
    )
    return inviter.account.get_contact_by_id(invited["contactId"]).create_chat(), joined


@pytest.fixture(scope="module")
def chats(product: None, module_lab: harness.Lab) -> Iterator[Chats]:
    started = time.monotonic()
    a, b = module_lab.add_node("a", "0.5.12"), module_lab.add_node("b", "0.5.12")
    module_lab.connect(a, b)
    module_lab.start_routers()
    module_lab.wait_reachable(a, b)
    a.bridge.settings["imap"]["listen_tls"] = f"tcp:{TLS_IMAP}:interface=127.0.0.1"
    a.bridge.settings["submission"]["listen_tls"] = f"tcp:{TLS_SUBMISSION}:interface=127.0.0.1"
    a.bridge.setup()
    b.bridge.setup(users={"bob": PASSWORDS["bob"], "carol": PASSWORDS["carol"]})
    a.bridge.start()
    b.bridge.start()
    links = {
        "alice": _link(
            a.bridge.cli("user", "add", "alice", "--password-stdin", input=PASSWORDS["alice"] + "\n").stdout
        ),
        **{
            name: _link(
                b.bridge.cli("login-link", name, "--password-stdin", input=PASSWORDS[name] + "\n").stdout
            )
            for name in ("bob", "carol")
        },
    }
    clients = [Client(a, a.dir / "deltachat"), Client(b, b.dir / "deltachat")]
    try:
        mark = time.monotonic()
        alice = clients[0].configure("alice", links["alice"])
        bob = clients[1].configure("bob", links["bob"])
        carol = clients[1].configure("carol", links["carol"])
        setup = time.monotonic()
        alice_to_bob, bob_to_alice = _secure_join(alice, bob)
        chats = Chats(a, b, alice, bob, carol, alice_to_bob, bob_to_alice)
        chats.timed("mesh, bridges and Delta Chat servers up", started)
        chats.timed("three accounts configured from dclogin: links and online", mark)
        chats.timed("SecureJoin of alice and bob across the mesh", setup)
        yield chats
    finally:
        for client in clients:
            client.close()


def test_accounts_use_the_printed_settings(chats: Chats) -> None:
    [alice] = chats.alice.account.list_transports()
    assert (alice["imapServer"], alice["imapPort"], alice["imapSecurity"]) == ("127.0.0.1", TLS_IMAP, "ssl")
    assert (alice["smtpServer"], alice["smtpPort"], alice["smtpSecurity"]) == (
        "127.0.0.1",
        TLS_SUBMISSION,
        "ssl",
    )
    [bob] = chats.bob.account.list_transports()
    assert (bob["imapPort"], bob["imapSecurity"]) == (harness.IMAP_PORT, "starttls")
    assert (bob["smtpPort"], bob["smtpSecurity"]) == (harness.SUBMISSION_PORT, "starttls")
    assert chats.alice.address == chats.a.bridge.address_of("alice")


def _exchange(sender: Chats, chat: Chat, receiver: ChatUser, text: str) -> None:
    started = time.monotonic()
    chat.send_text(text)
    received = receiver.wait_incoming(lambda s: s.text == text, MESSAGE_TIMEOUT, repr(text)).get_snapshot()
    assert received.show_padlock, "Delta Chat did not receive it end-to-end encrypted"
    sender.timed(f"{text!r} delivered and decrypted", started)


def test_encrypted_messages_both_ways(chats: Chats) -> None:
    _exchange(chats, chats.alice_to_bob, chats.bob, "Hello Bob, over the mesh")
    _exchange(chats, chats.bob_to_alice, chats.alice, "Hello Alice, and back")
    assert chats.alice_to_bob.get_basic_snapshot().is_encrypted
    assert chats.bob_to_alice.get_basic_snapshot().is_encrypted


def test_an_account_with_an_odd_password_from_its_login_link(chats: Chats) -> None:
    """The dclogin: link carries a password with ``"``, ``\\``, a space and non-ASCII, and Delta
    Chat core (Rust: async-imap quotes it for LOGIN, async-smtp sends it by AUTH) logs in with it:
    the account is configured, joins alice by SecureJoin and they exchange messages."""
    started = time.monotonic()
    added = chats.a.bridge.cli("user", "add", "dora", "--password-stdin", input=ODD_PASSWORD + "\n")
    dora = chats.alice.client.configure("dora", _link(added.stdout))
    assert dora.address == chats.a.bridge.address_of("dora")
    [transport] = dora.account.list_transports()
    assert transport["password"] == ODD_PASSWORD
    alice_to_dora, dora_to_alice = _secure_join(chats.alice, dora)
    chats.timed("dora configured from her link and joined alice", started)
    _exchange(chats, dora_to_alice, chats.alice, "Hello Alice, from dora")
    _exchange(chats, alice_to_dora, dora, "Hello dora")


def test_ten_megabyte_attachment(chats: Chats, tmp_path: Path) -> None:
    original = tmp_path / "ten-megabytes.bin"
    original.write_bytes(os.urandom(ATTACHMENT_SIZE))
    started = time.monotonic()
    chats.alice_to_bob.send_message(text="ten megabytes", file=str(original))
    # Delta Chat sends a large file as a small pre-message, then the full message
    message = chats.bob.wait_incoming(
        lambda s: s.file_name == original.name, ATTACHMENT_TIMEOUT, "the pre-message"
    )
    chats.bob.wait(
        lambda e: e.get("msgId") == message.id and message.get_snapshot().download_state == "Done",
        ATTACHMENT_TIMEOUT,
        "the attachment downloaded",
    )
    received = message.get_snapshot()
    chats.timed("10 MiB attachment sent, delivered and downloaded", started)
    assert received.show_padlock
    assert received.file_bytes == ATTACHMENT_SIZE
    digest = hashlib.sha256(Path(received.file).read_bytes()).hexdigest()
    assert digest == hashlib.sha256(original.read_bytes()).hexdigest()


def test_message_to_a_user_that_does_not_exist_fails(chats: Chats) -> None:
    """Alice has Carol's key, but Carol's account is gone: B refuses, A bounces, Delta Chat says failed.

    A bounce cannot be encrypted to Alice, and Delta Chat core 2.65 drops every unencrypted
    incoming message while force_encryption is on (its default), reports included: Alice's profile
    accepts unencrypted mail here, as a profile on a classic mail server would.
    """
    chats.alice.account.set_config("force_encryption", "0")
    carol_contact = chats.alice.account.create_contact(chats.carol.account)  # her vCard, with her key
    chats.carol.account.stop_io()
    chats.b.bridge.cli("user", "del", "carol")
    started = time.monotonic()
    message = carol_contact.create_chat().send_text("Carol, are you still there?")
    chats.alice.wait_kind("MsgFailed", MESSAGE_TIMEOUT, msgId=message.id)
    chats.timed("message to a deleted user marked failed after the bounce", started)
    assert message.get_snapshot().state == MessageState.OUT_FAILED
