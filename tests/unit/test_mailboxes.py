"""Mailbox storage (store.mailboxes) and the reactor-side Mailstore, on an in-memory database."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest
from fakestore import CREATED, ImmediateDB, failure_of, make_user, memory_database, result_of
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge.errors import MailboxError, NoSuchMailbox, UserError
from ygbridge.mailstore import Mailstore
from ygbridge.store import mailboxes
from ygbridge.store.models import Message, database

NOW = CREATED + 100
T = TypeVar("T")


@pytest.fixture(autouse=True)
def db() -> Iterator[None]:
    memory_database()
    make_user("alice")
    yield
    database.close()


@pytest.fixture
def mailstore() -> Mailstore:
    clock = Clock()
    clock.advance(NOW)
    return Mailstore(ImmediateDB(), clock)


def add(body: bytes = b"Subject: x\r\n\r\nhi\r\n", mailbox: str = "INBOX", **kwargs: object) -> int:
    options = {"flags": (), "internaldate": NOW, "message_id": None, "sender_node": None, **kwargs}
    added = mailboxes.add_message("alice", mailbox, body, **options)  # type: ignore[arg-type]
    assert added is not None
    return added[1]


def inbox() -> mailboxes.MailboxSnapshot:
    return next(box for box in mailboxes.user_mailboxes("alice") if box.name == "INBOX")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that awaits only Deferreds that have fired."""
    return result_of(Deferred.fromCoroutine(coroutine))


class Watcher:
    """Records what a MailboxState tells its watchers."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def messages_added(self, uids: Sequence[int]) -> None:
        self.events.append(("added", list(uids)))

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None:
        self.events.append(("flags", dict(flags)))

    def messages_expunged(self, uids: Sequence[int]) -> None:
        self.events.append(("expunged", list(uids)))


# store.mailboxes


def test_user_mailboxes_lists_defaults_with_messages() -> None:
    add(flags=["\\Seen"])
    boxes = {box.name: box for box in mailboxes.user_mailboxes("alice")}
    assert sorted(boxes) == ["Drafts", "INBOX", "Junk", "Sent", "Trash"]
    assert boxes["INBOX"].messages == ((1, frozenset({"\\Seen"})),)
    assert boxes["INBOX"].uidnext == 2
    assert boxes["INBOX"].uidvalidity == int(CREATED)
    assert boxes["Sent"].special_use == "\\Sent"
    assert boxes["Sent"].messages == ()


def test_unknown_user_and_mailbox() -> None:
    with pytest.raises(UserError):
        mailboxes.user_mailboxes("bob")
    with pytest.raises(NoSuchMailbox):
        add(mailbox="Nope")


def test_uids_grow_and_are_never_reused() -> None:
    assert [add(), add()] == [1, 2]
    mailboxes.store_flags(inbox().id, [2], ["\\Deleted"], 1)
    assert mailboxes.expunge(inbox().id) == [2]
    assert add() == 3


def test_inbox_name_is_case_insensitive() -> None:
    assert mailboxes.canonical_name("inbox") == "INBOX"
    assert mailboxes.canonical_name("Inbox/Sub/") == "INBOX/Sub"
    assert mailboxes.canonical_name("Inboxes") == "Inboxes"
    assert add(mailbox="iNbOx") == 1


def test_normalize_flags() -> None:
    flags = mailboxes.normalize_flags(["\\seen", "\\RECENT", "\\Bogus", "$MDNSent", "\\deleted"])
    assert flags == {"\\Seen", "\\Deleted", "$MDNSent"}


def test_store_flags_modes_return_changed_only() -> None:
    box = inbox().id
    add(), add(flags=["\\Seen"])
    assert mailboxes.store_flags(box, [1, 2], ["\\seen"], 1) == {1: {"\\Seen"}}
    assert mailboxes.store_flags(box, [1, 2], ["\\Flagged", "$Label"], 0) == {
        1: {"\\Flagged", "$Label"},
        2: {"\\Flagged", "$Label"},
    }
    assert mailboxes.store_flags(box, [2], ["$Label"], -1) == {2: {"\\Flagged"}}
    assert dict(inbox().messages) == {1: {"\\Flagged", "$Label"}, 2: {"\\Flagged"}}


def test_expunge_removes_deleted_only() -> None:
    box = inbox().id
    for _ in range(4):
        add()
    mailboxes.store_flags(box, [3, 2], ["\\Deleted"], 1)
    assert mailboxes.expunge(box) == [2, 3]
    assert [uid for uid, _ in inbox().messages] == [1, 4]


def test_load_messages_in_chunks_with_or_without_bodies() -> None:
    bodies = [b"Subject: %d\r\n\r\n\xff\r\n" % n for n in range(600)]
    for body in bodies:
        add(body)
    found = mailboxes.load_messages(inbox().id, list(range(600, 0, -1)) + [9999], bodies=True)
    assert [m.uid for m in found] == list(range(1, 601))
    assert [m.body for m in found] == bodies
    assert found[0].size == len(bodies[0]) and found[0].internaldate == NOW
    assert mailboxes.load_messages(inbox().id, [1], bodies=False)[0].body is None


def test_create_mailbox_with_superiors_and_fresh_uidvalidity() -> None:
    created = mailboxes.create_mailbox("alice", "Work/2024/", NOW)
    assert [(box.name, box.uidvalidity, box.uidnext) for box in created] == [
        ("Work", int(NOW), 1),
        ("Work/2024", int(NOW), 1),
    ]
    mailboxes.delete_mailbox("alice", "Work/2024")
    again = mailboxes.create_mailbox("alice", "Work/2024", NOW)
    assert again[0].uidvalidity == int(NOW) + 1  # never the UIDVALIDITY of the deleted one


@pytest.mark.parametrize("name", ["", "a*b", "a%", "a//b", "INBOX", "Sent"])
def test_create_mailbox_refuses(name: str) -> None:
    with pytest.raises(MailboxError):
        mailboxes.create_mailbox("alice", name, NOW)


def test_delete_mailbox() -> None:
    mailboxes.create_mailbox("alice", "A/B", NOW)
    add(mailbox="A/B")
    with pytest.raises(MailboxError, match="inside it"):
        mailboxes.delete_mailbox("alice", "A")
    with pytest.raises(MailboxError):
        mailboxes.delete_mailbox("alice", "inbox")
    mailboxes.delete_mailbox("alice", "A/B")
    assert Message.select().count() == 0
    assert "A/B" not in {box.name for box in mailboxes.user_mailboxes("alice")}


def test_rename_mailbox_with_inferiors() -> None:
    mailboxes.create_mailbox("alice", "A/B", NOW)
    assert mailboxes.rename_mailbox("alice", "A", "C") == [("A", "C"), ("A/B", "C/B")]
    with pytest.raises(MailboxError):
        mailboxes.rename_mailbox("alice", "C", "Sent")
    with pytest.raises(MailboxError):
        mailboxes.rename_mailbox("alice", "INBOX", "Old")


def test_subscription() -> None:
    mailboxes.set_subscribed("alice", "Junk", False)
    assert {box.name: box.subscribed for box in mailboxes.user_mailboxes("alice")}["Junk"] is False


def test_copy_messages() -> None:
    add(b"one", flags=["\\Seen"]), add(b"two"), add(b"three")
    target_id, added = mailboxes.copy_messages(inbox().id, [3, 1, 77], "alice", "Trash")
    assert added == [(1, frozenset({"\\Seen"})), (2, frozenset())]
    assert [m.body for m in mailboxes.load_messages(target_id, [1, 2], bodies=True)] == [b"one", b"three"]
    assert mailboxes.add_message(
        "alice", "Trash", b"x", flags=(), internaldate=NOW, message_id=None, sender_node=None
    ) == (target_id, 3)


# Mailstore


def test_deliver_returns_uid_and_stamps_arrival_time(mailstore: Mailstore) -> None:
    body = b"Message-ID: <1@a>\r\n\r\n\xe9\r\n"
    uid = result_of(mailstore.deliver("alice", body, message_id="<1@a>", sender_node="200::1"))
    assert uid == 1
    (message,) = mailboxes.load_messages(inbox().id, [1], bodies=True)
    assert (message.body, message.internaldate) == (body, NOW)


def test_deliver_dedupes_on_sender_node_and_message_id(mailstore: Mailstore) -> None:
    def deliver(mailbox: str = "INBOX", **kwargs: str | None) -> int | None:
        options = {"message_id": "<1@a>", "sender_node": "200::1", **kwargs}
        return result_of(mailstore.deliver("alice", b"x", mailbox=mailbox, **options))  # type: ignore[arg-type]

    assert deliver() == 1
    assert deliver() is None
    assert deliver(sender_node="200::2") == 2  # another node may reuse the id
    assert deliver(sender_node=None) == 3  # no dedupe without both
    assert deliver(sender_node=None) == 4
    assert deliver(message_id=None) == 5
    assert deliver(mailbox="Sent") == 1  # per mailbox


def test_deliver_failures(mailstore: Mailstore) -> None:
    failure = failure_of(mailstore.deliver("bob", b"x", message_id=None, sender_node=None))
    assert failure.check(UserError)
    failure = failure_of(mailstore.deliver("alice", b"x", message_id=None, sender_node=None, mailbox="No"))
    assert failure.check(NoSuchMailbox)


def test_deliver_with_flags(mailstore: Mailstore) -> None:
    mailstore.deliver("alice", b"x", message_id=None, sender_node=None, mailbox="Sent", flags=["\\seen"])
    (sent,) = [box for box in mailboxes.user_mailboxes("alice") if box.name == "Sent"]
    assert sent.messages == ((1, frozenset({"\\Seen"})),)


def test_open_user_shares_live_state_until_last_close(mailstore: Mailstore) -> None:
    account = run(mailstore.open_user("alice"))
    assert run(mailstore.open_user("alice")) is account and account.sessions == 2
    mailstore.close_user(account)
    mailstore.deliver("alice", b"x", message_id=None, sender_node=None)
    assert list(account.mailboxes["INBOX"].messages) == [1]
    mailstore.close_user(account)
    again = run(mailstore.open_user("alice"))
    assert again is not account and list(again.mailboxes["INBOX"].messages) == [1]


def test_watchers_hear_changes_made_by_others(mailstore: Mailstore) -> None:
    account = run(mailstore.open_user("alice"))
    box = account.get("inbox")
    assert box is not None
    mine, other = Watcher(), Watcher()
    box.watchers |= {mine, other}
    mailstore.deliver("alice", b"x", message_id=None, sender_node=None)
    mailstore.deliver("alice", b"y", message_id=None, sender_node=None)
    assert other.events == mine.events == [("added", [1]), ("added", [2])]
    assert box.uidnext == 3
    run(mailstore.store_flags(box, [1], ["\\Deleted"], 1, origin=mine))
    assert other.events[-1] == ("flags", {1: {"\\Deleted"}}) and len(mine.events) == 2
    assert run(mailstore.expunge(box, origin=mine)) == [1]
    assert other.events[-1] == ("expunged", [1]) and len(mine.events) == 2
    assert box.messages == {2: frozenset()}


def test_mailbox_management_updates_live_state(mailstore: Mailstore) -> None:
    account = run(mailstore.open_user("alice"))
    run(mailstore.create(account, "A/B"))
    assert {"A", "A/B"} <= set(account.mailboxes)
    moved = account.mailboxes["A/B"]
    run(mailstore.rename(account, "A", "C"))
    assert account.mailboxes["C/B"] is moved and moved.name == "C/B"
    run(mailstore.subscribe(account, "C", False))
    assert account.mailboxes["C"].subscribed is False
    run(mailstore.delete(account, "C/B"))
    assert "C/B" not in account.mailboxes
    run(mailstore.copy(account.mailboxes["INBOX"], [], account, "C"))
