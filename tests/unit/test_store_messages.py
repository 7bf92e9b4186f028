"""Messages in the store (store.messages, flags, indexing, search SQL) and the schema migration."""

from __future__ import annotations

from datetime import date

import peewee
import pytest

from ygbridge.store import messages, search
from ygbridge.store.db import migrate
from ygbridge.store.flags import normalize_flags, pack_flags, unpack_flags
from ygbridge.store.indexing import index_message
from ygbridge.store.mailboxes import find_mailbox
from ygbridge.store.models import SCHEMA_VERSION, HeaderField, Mailbox, Message, SchemaVersion, User, database
from ygbridge.testing.store import CREATED, add_message, alice_database, make_user

NOW = CREATED + 100


db = pytest.fixture(alice_database, autouse=True, name="db")


def box(name: str = "INBOX") -> int:
    return find_mailbox("alice", name).id


def flags_of(uid: int, name: str = "INBOX") -> frozenset[str]:
    (message,) = messages.load_messages(box(name), [uid], bodies=False)
    return message.flags


# Flags and the index


def test_flags_pack_into_bits_and_keywords() -> None:
    flags = normalize_flags(["\\seen", "\\RECENT", "\\Bogus", "$MDNSent", "\\deleted", "$Chat"])
    assert flags == {"\\Seen", "\\Deleted", "$MDNSent", "$Chat"}
    assert pack_flags(flags) == (4 | 8, "$Chat $MDNSent")
    assert unpack_flags(4 | 8, "$Chat $MDNSent") == flags
    assert unpack_flags(0, "") == frozenset()


def test_index_decodes_and_case_folds_header_fields() -> None:
    index = index_message(
        b"From: =?utf-8?q?J=C3=BCrgen?= <J@X>\r\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n  folded\r\n"
        b"Date: Tue, 14 Nov 2023 23:30:00 -0500\r\n"
        b"X-Bad: =?nosuch?q?a?=\r\n"
        b"no colon here\r\n"
        b"\r\nbody"
    )
    assert index.fields == (
        ("from", "jürgen <j@x>"),
        ("subject", "grüsse  folded"),
        ("date", "tue, 14 nov 2023 23:30:00 -0500"),
        ("x-bad", "=?nosuch?q?a?="),
    )
    assert index.sent_date == date(2023, 11, 14)  # the day as written, in its own time zone
    assert index_message(b"A: b\r\n\r\nbody").header_size == 8
    assert index_message(b"Date: someday\r\n\r\n").sent_date is None
    assert index_message(b"Date: Mon, 31 Feb 2023 10:00:00 +0000\r\n\r\n").sent_date is None


# store.messages


def test_uids_grow_and_are_never_reused() -> None:
    assert [add_message(), add_message()] == [1, 2]
    messages.store_flags(box(), [2], ["\\Deleted"], 1)
    assert messages.expunge(box()) == [2]
    assert add_message() == 3
    assert messages.mailbox_contents(box()).uidnext == 4


def test_add_message_stores_every_column_as_the_models_read_it() -> None:
    body = b"Date: Tue, 21 Nov 2023 10:00:00 +0100\r\nSubject: =?utf-8?q?H=C3=A9?=\r\n\r\n\x00\xff"
    added = messages.add_message(
        "alice",
        "inbox",
        body,
        flags=["\\Seen", "$Chat"],
        internaldate=NOW,
        message_id="<1@x>",
        sender_node="200::1",
    )
    assert added == messages.Added(box(), int(CREATED), 1)
    row = Message.get(Message.mailbox == box(), Message.uid == 1)
    assert (row.system_flags, row.keywords, row.internaldate, row.size) == (8, "$Chat", NOW, len(body))
    assert (bytes(row.body), row.header_size, row.sent_date) == (body, len(body) - 2, date(2023, 11, 21))
    assert (row.message_id, row.sender_node) == ("<1@x>", "200::1")
    fields = HeaderField.select(HeaderField.name, HeaderField.value).where(HeaderField.message == row.id)
    assert [(f.name, f.value) for f in fields.order_by(HeaderField.id)] == [
        ("date", "tue, 21 nov 2023 10:00:00 +0100"),
        ("subject", "hé"),
    ]
    assert messages.mailbox_counts(box()) == messages.Counts(1, 0, 1, 2, int(CREATED))


def test_contents_and_counts() -> None:
    add_message(flags=["\\Seen", "$Chat"]), add_message(flags=["$Label", "$Chat"]), add_message()
    contents = messages.mailbox_contents(box())
    assert list(contents.messages) == [1, 2, 3]
    assert (contents.uidnext, contents.uidvalidity, contents.first_unseen) == (4, int(CREATED), 2)
    assert contents.keywords == {"$Chat", "$Label"}
    assert messages.mailbox_counts(box()) == messages.Counts(3, 2, 3, 4, int(CREATED))
    empty = messages.mailbox_contents(box("Junk"))
    assert (list(empty.messages), empty.first_unseen, empty.keywords) == ([], None, frozenset())


def _scanned(mailbox_id: int) -> tuple[int, int]:
    """(messages, unseen) of a mailbox counted the slow way."""
    in_box = Message.select().where(Message.mailbox == mailbox_id)
    return in_box.count(), in_box.where(Message.system_flags.bin_and(8) == 0).count()


def test_counters_follow_every_change() -> None:
    for n in range(6):
        add_message(flags=["\\Seen"] if n % 2 else [])

    def check() -> None:
        for name in ("INBOX", "Trash"):
            counts = messages.mailbox_counts(box(name))
            assert (counts.messages, counts.unseen) == _scanned(box(name))

    check()
    messages.store_flags(box(), [1, 2], ["\\Seen"], 1)
    messages.store_flags(box(), [4, 5], ["\\Seen"], -1)
    messages.store_flags(box(), [3], ["\\Flagged"], 0)
    check()
    messages.store_flags(box(), [1, 4], ["\\Deleted"], 1)
    messages.expunge(box())
    check()
    messages.copy_messages(box(), [2, 3], "alice", "Trash")
    messages.move_messages(box(), [5, 6], "alice", "Trash")
    check()
    assert messages.mailbox_counts(box()).messages == 2


def test_recent_is_claimed_by_the_first_select_only() -> None:
    add_message(), add_message()
    assert messages.mailbox_counts(box()).recent == 2
    examined = messages.mailbox_contents(box(), claim=False)
    assert (examined.recent, examined.claimed) == (2, None)
    selected = messages.mailbox_contents(box(), claim=True)
    assert (selected.recent, selected.claimed) == (2, (1, 2))
    again = messages.mailbox_contents(box(), claim=True)
    assert (again.recent, again.claimed) == (0, None)
    assert messages.mailbox_counts(box()).recent == 0
    add_message()
    assert messages.mailbox_counts(box()).recent == 1
    messages.claim_recent(box(), 4)
    assert messages.mailbox_contents(box(), claim=True).claimed is None


def test_store_flags_modes_report_every_message() -> None:
    add_message(), add_message(flags=["\\Seen"])
    assert messages.store_flags(box(), [1, 2, 9], ["\\seen"], 1) == [
        (1, {"\\Seen"}, True),
        (2, {"\\Seen"}, False),
    ]
    assert messages.store_flags(box(), [2, 1], ["\\Flagged", "$Label"], 0) == [
        (1, {"\\Flagged", "$Label"}, True),
        (2, {"\\Flagged", "$Label"}, True),
    ]
    assert messages.store_flags(box(), [2], ["$Label"], -1) == [(2, {"\\Flagged"}, True)]
    assert (flags_of(1), flags_of(2)) == ({"\\Flagged", "$Label"}, {"\\Flagged"})


def test_expunge_removes_deleted_only() -> None:
    for _ in range(4):
        add_message()
    messages.store_flags(box(), [3, 2, 4], ["\\Deleted"], 1)
    assert messages.expunge(box(), [4, 1]) == [4]
    assert messages.expunge(box()) == [2, 3]
    assert list(messages.mailbox_contents(box()).messages) == [1]
    assert HeaderField.select().count() == 1  # index entries go with their message


def test_load_messages_in_chunks_with_or_without_bodies() -> None:
    bodies = [b"Subject: %d\r\n\r\n\xff\r\n" % n for n in range(600)]
    for body in bodies:
        add_message(body)
    found = messages.load_messages(box(), list(range(600, 0, -1)) + [9999], bodies=True)
    assert [m.uid for m in found] == list(range(1, 601))
    assert [m.body for m in found] == bodies
    assert found[0].size == len(bodies[0]) and found[0].internaldate == NOW
    assert messages.load_messages(box(), [1], bodies=False)[0].body is None


def test_load_messages_stops_after_the_byte_budget() -> None:
    for n in range(5):
        add_message(b"Subject: %d\r\n\r\n12345\r\n" % n)  # 22 bytes each
    assert [m.uid for m in messages.load_messages(box(), [1, 2, 3, 4, 5], bodies=True, max_bytes=30)] == [
        1,
        2,
    ]
    assert [m.uid for m in messages.load_messages(box(), [3, 4], bodies=True, max_bytes=1)] == [3]


def test_copy_messages_with_flags_and_index() -> None:
    (
        add_message(b"Subject: one\r\n\r\n1", flags=["\\Seen"]),
        add_message(b"Subject: two\r\n\r\n2"),
        add_message(b"Subject: three\r\n\r\n3"),
    )
    copied = messages.copy_messages(box(), [3, 1, 77], "alice", "Trash")
    assert (copied.mailbox_id, copied.uidvalidity) == (box("Trash"), int(CREATED))
    assert (list(copied.source), list(copied.target)) == ([1, 3], [1, 2])
    loaded = messages.load_messages(box("Trash"), [1, 2], bodies=True)
    assert [(m.body, m.flags) for m in loaded] == [
        (b"Subject: one\r\n\r\n1", {"\\Seen"}),
        (b"Subject: three\r\n\r\n3", set()),
    ]
    found = search.matching_uids(box("Trash"), search.HeaderContains("subject", "THREE"), 10)
    assert list(found) == [2]
    assert add_message(mailbox="Trash") == 3
    assert list(search.matching_uids(box(), search.EVERYTHING, 10)) == [1, 2, 3]  # the originals stay


def test_move_messages_gives_new_uids() -> None:
    add_message(b"Subject: one\r\n\r\n1"), add_message(b"Subject: two\r\n\r\n2", flags=["$Chat"])
    add_message(mailbox="Junk")
    moved = messages.move_messages(box(), [2, 1], "alice", "Junk")
    assert (list(moved.source), list(moved.target)) == ([1, 2], [2, 3])
    assert list(messages.mailbox_contents(box()).messages) == []
    assert flags_of(3, "Junk") == {"$Chat"}
    assert list(search.matching_uids(box("Junk"), search.HeaderContains("subject", "two"), 10)) == [3]
    assert messages.mailbox_contents(box("Junk")).uidnext == 4


# store.search, beyond what the IMAP tests ask


def test_search_escapes_like_wildcards_and_backslashes() -> None:
    add_message(b"Subject: 50% off_now \\o/\r\n\r\nx", flags=["$a_b"])
    add_message(b"Subject: 50 percent offXnow\r\n\r\nx", flags=["$aXb"])

    def found(term: search.Term) -> list[int]:
        return list(search.matching_uids(box(), term, 10))

    assert found(search.HeaderContains("subject", "50%")) == [1]
    assert found(search.HeaderContains("subject", "off_now")) == [1]
    assert found(search.HeaderContains("subject", "\\o/")) == [1]
    assert found(search.HasFlag("$a_b")) == [1]
    assert found(search.HasFlag("$a")) == []  # whole keywords only
    assert found(search.UidRanges(((2, 2), (5, 9)))) == [2]
    assert found(search.UidRanges(())) == []
    assert list(search.matching_uids(box(), search.EVERYTHING, 1)) == [1]


def test_search_sent_date_without_a_date_field() -> None:
    add_message(b"Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n\r\nx"), add_message(b"Subject: undated\r\n\r\nx")
    before = search.Sent("before", date(2024, 1, 1))
    assert list(search.matching_uids(box(), before, 10)) == [1]
    assert list(search.matching_uids(box(), search.Not(before), 10)) == [2]


# Migration from schema version 1


def test_migrates_a_version_1_database() -> None:
    """Without the queue tables (they are created whole at the end)."""
    db = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    database.initialize(db)
    db.create_tables([SchemaVersion, User, Mailbox])
    SchemaVersion.create(version=1)
    make_user("alice")
    db.execute_sql(
        'CREATE TABLE "message" ("id" INTEGER NOT NULL PRIMARY KEY, "mailbox_id" INTEGER NOT NULL, '
        '"uid" INTEGER NOT NULL, "flags" TEXT NOT NULL, "internaldate" REAL NOT NULL, '
        '"size" INTEGER NOT NULL, "body" BLOB NOT NULL, "message_id" VARCHAR(998), '
        '"sender_node" VARCHAR(64), FOREIGN KEY ("mailbox_id") REFERENCES "mailbox" ("id") ON DELETE CASCADE)'
    )
    body = b"From: Bob <bob@x>\r\nDate: Tue, 14 Nov 2023 10:00:00 +0000\r\n\r\nhello"
    for uid, flags in ((1, "$Chat \\Seen"), (2, "")):
        db.execute_sql(
            'INSERT INTO "message" ("mailbox_id", "uid", "flags", "internaldate", "size", "body") '
            "VALUES (?, ?, ?, ?, ?, ?)",
            (box(), uid, flags, NOW, len(body), body),
        )
    Mailbox.update(uidnext=3).where(Mailbox.id == box()).execute()
    migrate(db)
    assert SchemaVersion.get().version == SCHEMA_VERSION
    assert "flags" not in {column.name for column in db.get_columns("message")}
    assert flags_of(1) == {"\\Seen", "$Chat"} and flags_of(2) == set()
    bob = search.And((search.HeaderContains("from", "BOB"), search.Sent("on", date(2023, 11, 14))))
    assert list(search.matching_uids(box(), bob, 10)) == [1, 2]
    assert list(search.matching_uids(box(), search.BodyContains("hello", whole=False), 10)) == [1, 2]
    assert add_message() == 3
    migrate(db)  # nothing left to do
    assert Message.select().count() == 3


def test_refuses_a_newer_database() -> None:
    SchemaVersion.update(version=SCHEMA_VERSION + 1).execute()
    with pytest.raises(Exception, match="newer than this ygbridge"):
        migrate(database.obj)
