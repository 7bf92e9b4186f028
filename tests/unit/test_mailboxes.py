"""Mailbox storage (store.mailboxes) and the reactor-side MailHub, on an in-memory database."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge.errors import MailboxError, MailboxLimitReached, NoSuchMailbox, UserError
from ygbridge.mailhub import MailHub
from ygbridge.store import mailboxes, messages
from ygbridge.store.db import migrate
from ygbridge.store.models import (
    DEFAULT_MAILBOXES,
    SCHEMA_VERSION,
    HeaderField,
    Message,
    SchemaVersion,
    User,
    database,
)
from ygbridge.testing.deferreds import failure_of, result_of
from ygbridge.testing.store import CREATED, ImmediateDB, add_message, alice_database

NOW = CREATED + 100
T = TypeVar("T")


db = pytest.fixture(alice_database, autouse=True, name="db")


@pytest.fixture
def mailhub() -> MailHub:
    clock = Clock()
    clock.advance(NOW)
    return MailHub(ImmediateDB(), clock)


def box_id(name: str = "INBOX") -> int:
    return mailboxes.find_mailbox("alice", name).id


def uids(name: str = "INBOX") -> list[int]:
    return list(messages.mailbox_contents(box_id(name)).messages)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that awaits only Deferreds that have fired."""
    return result_of(Deferred.fromCoroutine(coroutine))


class Watcher:
    """Records what a MailboxState tells its watchers."""

    def __init__(self, writeable: bool = False) -> None:
        self.writeable = writeable
        self.events: list[tuple[str, object]] = []

    def messages_added(self, uids: Sequence[int], recent: bool) -> None:
        self.events.append(("recent" if recent else "added", list(uids)))

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None:
        self.events.append(("flags", dict(flags)))

    def messages_expunged(self, uids: Sequence[int]) -> None:
        self.events.append(("expunged", list(uids)))


# store.mailboxes


def test_user_mailboxes_lists_defaults() -> None:
    boxes = {box.name: box for box in mailboxes.user_mailboxes("alice")}
    assert sorted(boxes) == ["Drafts", "INBOX", "Junk", "Sent", "Trash"]
    assert boxes["Sent"].special_use == "\\Sent" and boxes["INBOX"].special_use is None
    assert all(box.subscribed for box in boxes.values())


def test_unknown_user_and_mailbox() -> None:
    with pytest.raises(UserError):
        mailboxes.user_mailboxes("bob")
    with pytest.raises(NoSuchMailbox):
        add_message(mailbox="Nope")


def test_inbox_name_is_case_insensitive() -> None:
    assert mailboxes.canonical_name("inbox") == "INBOX"
    assert mailboxes.canonical_name("Inbox/Sub/") == "INBOX/Sub"
    assert mailboxes.canonical_name("Inboxes") == "Inboxes"
    assert add_message(mailbox="iNbOx") == 1


def test_create_mailbox_with_superiors_and_fresh_uidvalidity() -> None:
    created = mailboxes.create_mailbox("alice", "Work/2024/", NOW)
    assert [box.name for box in created] == ["Work", "Work/2024"]
    assert messages.mailbox_counts(created[1].id).uidvalidity == int(NOW)
    mailboxes.delete_mailbox("alice", "Work/2024")
    (again,) = mailboxes.create_mailbox("alice", "Work/2024", NOW)
    assert messages.mailbox_counts(again.id).uidvalidity == int(NOW) + 1  # never the deleted one's


@pytest.mark.parametrize("name", ["", "a*b", "a%", "a//b", "INBOX", "Sent"])
def test_create_mailbox_refuses(name: str) -> None:
    with pytest.raises(MailboxError):
        mailboxes.create_mailbox("alice", name, NOW)


def test_delete_mailbox() -> None:
    mailboxes.create_mailbox("alice", "A/B", NOW)
    add_message(mailbox="A/B")
    with pytest.raises(MailboxError, match="inside it"):
        mailboxes.delete_mailbox("alice", "A")
    with pytest.raises(MailboxError):
        mailboxes.delete_mailbox("alice", "inbox")
    mailboxes.delete_mailbox("alice", "A/B")
    assert Message.select().count() == 0 and HeaderField.select().count() == 0
    assert "A/B" not in {box.name for box in mailboxes.user_mailboxes("alice")}


def test_rename_mailbox_with_inferiors() -> None:
    mailboxes.create_mailbox("alice", "A/B", NOW)
    mailboxes.create_mailbox("alice", "a/b", NOW)  # another name: names are case-sensitive
    renamed = mailboxes.rename_mailbox("alice", "A", "C", NOW)
    assert renamed.names == [("A", "C"), ("A/B", "C/B")] and renamed.created == []
    with pytest.raises(MailboxError):
        mailboxes.rename_mailbox("alice", "C", "Sent", NOW)
    with pytest.raises(MailboxError):
        mailboxes.rename_mailbox("alice", "INBOX", "Old", NOW)
    with pytest.raises(MailboxError, match="inside itself"):
        mailboxes.rename_mailbox("alice", "C", "C/D", NOW)
    names = {box.name for box in mailboxes.user_mailboxes("alice")}
    assert {"C", "C/B", "a", "a/b"} <= names and not {"A", "A/B"} & names


def test_rename_creates_missing_superiors_of_the_new_name() -> None:
    mailboxes.create_mailbox("alice", "A", NOW)
    renamed = mailboxes.rename_mailbox("alice", "A", "X/Y/A", NOW)
    assert renamed.names == [("A", "X/Y/A")]
    assert [box.name for box in renamed.created] == ["X", "X/Y"]
    with pytest.raises(MailboxError, match="already exists"):
        mailboxes.rename_mailbox("alice", "Sent", "X", NOW)


def test_subscription() -> None:
    mailboxes.set_subscribed("alice", "Junk", False)
    assert {box.name: box.subscribed for box in mailboxes.user_mailboxes("alice")}["Junk"] is False


def test_create_subscribes_nothing() -> None:
    created = mailboxes.create_mailbox("alice", "Work/2024", NOW)
    assert [box.subscribed for box in created] == [False, False]
    assert {box.name for box in mailboxes.user_mailboxes("alice") if box.subscribed} == set(DEFAULT_MAILBOXES)


def test_mailboxes_per_user_cap_counts_superiors() -> None:
    limit = len(DEFAULT_MAILBOXES) + 2
    mailboxes.create_mailbox("alice", "A", NOW, limit)
    with pytest.raises(MailboxLimitReached) as refused:
        mailboxes.create_mailbox("alice", "B/C", NOW, limit)  # B and B/C: one too many
    assert str(refused.value).startswith("[LIMIT] at most 7 mailboxes")
    assert mailboxes.create_mailbox("alice", "A/B", NOW, limit)[0].name == "A/B"
    with pytest.raises(MailboxLimitReached):
        mailboxes.create_mailbox("alice", "D", NOW, limit)
    with pytest.raises(MailboxLimitReached):
        mailboxes.rename_mailbox("alice", "A/B", "E/B", NOW, limit)  # would create E
    mailboxes.delete_mailbox("alice", "A/B")
    assert mailboxes.create_mailbox("alice", "D", NOW, limit)[0].name == "D"


def test_uidvalidity_is_never_given_twice_within_a_second() -> None:
    seen = set()
    for _ in range(3):
        (box,) = mailboxes.create_mailbox("alice", "Again", NOW)
        seen.add(messages.mailbox_counts(box.id).uidvalidity)
        mailboxes.delete_mailbox("alice", "Again")
    assert len(seen) == 3


def test_create_costs_the_same_queries_however_many_mailboxes(caplog: pytest.LogCaptureFixture) -> None:
    """Indexed lookups only: the statements a CREATE runs do not grow with the mailbox count."""

    def statements(name: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            mailboxes.create_mailbox("alice", name, NOW, 1000)
        return [record.getMessage() for record in caplog.records]

    few = statements("Few/One")
    for n in range(300):
        mailboxes.create_mailbox("alice", f"Many/{n}", NOW)
    many = statements("Lots/One")
    assert len(many) == len(few) == 6  # user, which names exist, count, UIDVALIDITY, two inserts


def test_migration_to_version_4_remembers_the_highest_uidvalidity(db: None) -> None:
    mailboxes.create_mailbox("alice", "Later", NOW + 50)
    database.execute_sql('ALTER TABLE "user" DROP COLUMN "last_uidvalidity"')
    SchemaVersion.update(version=3).execute()
    migrate(database.obj)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    assert User.get(User.name == "alice").last_uidvalidity == int(NOW + 50)
    (box,) = mailboxes.create_mailbox("alice", "Next", NOW)
    assert messages.mailbox_counts(box.id).uidvalidity == int(NOW + 50) + 1


# MailHub


def test_deliver_returns_uid_and_stamps_arrival_time(mailhub: MailHub) -> None:
    body = b"Message-ID: <1@a>\r\n\r\n\xe9\r\n"
    uid = result_of(mailhub.deliver("alice", body, message_id="<1@a>", sender_node="200::1"))
    assert uid == 1
    (message,) = messages.load_messages(box_id(), [1], bodies=True)
    assert (message.body, message.internaldate) == (body, NOW)


def test_deliver_dedupes_on_sender_node_and_message_id(mailhub: MailHub) -> None:
    def deliver(mailbox: str = "INBOX", **kwargs: str | None) -> int | None:
        options = {"message_id": "<1@a>", "sender_node": "200::1", **kwargs}
        return result_of(mailhub.deliver("alice", b"x", mailbox=mailbox, **options))  # type: ignore[arg-type]

    assert deliver() == 1
    assert deliver() is None
    assert deliver(sender_node="200::2") == 2  # another node may reuse the id
    assert deliver(sender_node=None) == 3  # no dedupe without both
    assert deliver(sender_node=None) == 4
    assert deliver(message_id=None) == 5
    assert deliver(mailbox="Sent") == 1  # per mailbox


def test_deliver_failures(mailhub: MailHub) -> None:
    failure = failure_of(mailhub.deliver("bob", b"x", message_id=None, sender_node=None))
    assert failure.check(UserError)
    failure = failure_of(mailhub.deliver("alice", b"x", message_id=None, sender_node=None, mailbox="No"))
    assert failure.check(NoSuchMailbox)


def test_deliver_with_flags(mailhub: MailHub) -> None:
    mailhub.deliver("alice", b"x", message_id=None, sender_node=None, mailbox="Sent", flags=["\\seen"])
    (message,) = messages.load_messages(box_id("Sent"), [1], bodies=False)
    assert message.flags == {"\\Seen"} and message.body is None


def test_open_user_shares_mailboxes_until_last_close(mailhub: MailHub) -> None:
    account = run(mailhub.open_user("alice"))
    assert run(mailhub.open_user("alice")) is account and account.sessions == 2
    mailhub.close_user(account)
    mailhub.close_user(account)
    again = run(mailhub.open_user("alice"))
    assert again is not account and sorted(again.mailboxes) == sorted(account.mailboxes)


def test_watchers_hear_changes_made_by_others(mailhub: MailHub) -> None:
    account = run(mailhub.open_user("alice"))
    box = account.get("inbox")
    assert box is not None
    mine, other = Watcher(), Watcher()
    box.watchers.update({mine: None, other: None})
    mailhub.deliver("alice", b"x", message_id=None, sender_node=None)
    mailhub.deliver("alice", b"y", message_id=None, sender_node=None)
    assert other.events == mine.events == [("added", [1]), ("added", [2])]  # read-only: not recent
    run(mailhub.store_flags(box, [1, 2], ["\\Deleted"], 1, origin=mine))
    run(mailhub.store_flags(box, [1], ["\\Deleted"], 1, origin=mine))  # no change: nobody hears
    assert other.events[2:] == [("flags", {1: {"\\Deleted"}, 2: {"\\Deleted"}})] and len(mine.events) == 2
    assert run(mailhub.expunge(box, [2, 9], origin=mine)) == [2]
    assert other.events[-1] == ("expunged", [2]) and len(mine.events) == 2
    moved = run(mailhub.move(box, [1], account, "Trash", origin=mine))
    assert (list(moved.source), list(moved.target)) == ([1], [1])
    assert other.events[-1] == ("expunged", [1]) and len(mine.events) == 2
    assert uids() == [] and uids("Trash") == [1]


def test_the_first_read_write_watcher_gets_new_mail_as_recent(mailhub: MailHub) -> None:
    account = run(mailhub.open_user("alice"))
    box = account.get("INBOX")
    assert box is not None
    examining, first, second = Watcher(), Watcher(writeable=True), Watcher(writeable=True)
    box.watchers.update({examining: None, first: None, second: None})
    mailhub.deliver("alice", b"x", message_id=None, sender_node=None)
    assert (examining.events, first.events, second.events) == (
        [("added", [1])],
        [("recent", [1])],
        [("added", [1])],
    )
    # the claim reached the database: a later SELECT does not get the message as recent again
    assert messages.mailbox_contents(box.id, claim=True).claimed is None
    assert messages.mailbox_counts(box.id).recent == 0


def test_mailbox_management_updates_live_state(mailhub: MailHub) -> None:
    account = run(mailhub.open_user("alice"))
    run(mailhub.create(account, "A/B"))
    assert {"A", "A/B"} <= set(account.mailboxes)
    moved = account.mailboxes["A/B"]
    run(mailhub.rename(account, "A", "C"))
    assert account.mailboxes["C/B"] is moved and moved.name == "C/B"
    run(mailhub.subscribe(account, "C", False))
    assert account.mailboxes["C"].subscribed is False
    run(mailhub.delete(account, "C/B"))
    assert "C/B" not in account.mailboxes
    watcher = Watcher()
    account.mailboxes["C"].watchers[watcher] = None
    add_message(b"one")
    copied = run(mailhub.copy(account.mailboxes["INBOX"], [1], account, "C"))
    assert watcher.events == [("added", [1])] and list(copied.target) == [1]


def test_live_state_lookups_follow_changes(db: None) -> None:
    clock = Clock()
    clock.advance(NOW)
    mailhub = MailHub(ImmediateDB(), clock, mailboxes_per_user=8)
    account = run(mailhub.open_user("alice"))
    run(mailhub.create(account, "A/B"))
    box = account.mailboxes["A/B"]
    assert account.by_id(box.id) is box and account.has_children("A") and not account.has_children("A/B")
    run(mailhub.rename(account, "A", "X/Y"))
    assert account.by_id(box.id) is box and box.name == "X/Y/B"
    assert account.names() == sorted(["Drafts", "INBOX", "Junk", "Sent", "Trash", "X", "X/Y", "X/Y/B"])
    failure = failure_of(Deferred.fromCoroutine(mailhub.create(account, "Z")))
    assert failure.check(MailboxLimitReached) and "Z" not in account.mailboxes
    run(mailhub.delete(account, "X/Y/B"))
    assert account.by_id(box.id) is None and not account.has_children("X/Y")


def test_status_and_select_answers_are_kept_until_the_next_change(
    mailhub: MailHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = run(mailhub.open_user("alice"))
    box = account.get("INBOX")
    assert box is not None
    reads: list[str] = []
    for name in ("mailbox_counts", "mailbox_contents"):
        real = getattr(messages, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(messages, name, counted)
    mailhub.deliver("alice", b"x", message_id=None, sender_node=None)
    assert run(mailhub.counts(box)).unseen == run(mailhub.counts(box)).unseen == 1
    assert reads == ["mailbox_counts"]
    run(mailhub.contents(account, box, claim=True))  # claims the new message: read, and not kept
    uids, contents = run(mailhub.contents(account, box, claim=True))
    uids_again, contents_again = run(mailhub.contents(account, box, claim=False))
    assert reads == ["mailbox_counts", "mailbox_contents", "mailbox_contents"]
    assert list(uids) == list(uids_again) == [1] and contents_again is contents and contents.recent == 0
    assert run(mailhub.counts(box)).recent == 0  # the claim made the kept counts stale
    watcher = Watcher()
    box.watchers[watcher] = None
    run(mailhub.store_flags(box, [1], ["\\Seen"], 1, origin=watcher))
    assert run(mailhub.counts(box)).unseen == 0
    mailhub.deliver("alice", b"y", message_id=None, sender_node=None)
    uids, contents = run(mailhub.contents(account, box, claim=False))
    assert list(uids) == [1, 2] and contents.first_unseen == 2
    assert run(mailhub.counts(box)).messages == 2
