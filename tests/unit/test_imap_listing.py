"""The UIDs and flags the MailHub keeps of a selected mailbox (store.uidflags): FETCH of flags
answered from them, and kept equal to the store through every change, whoever makes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred

from ygbridge import mailhub as mailhub_module
from ygbridge.mailhub import MailboxState, MailHub
from ygbridge.store import messages
from ygbridge.store.uidflags import UidFlags
from ygbridge.testing.imap import Client, ImapLab, alice_checker, imap_factory, running_lab
from ygbridge.testing.store import alice_database

lab = pytest.fixture(running_lab, name="lab")


def inbox(lab: ImapLab) -> MailboxState:
    box = lab.mailhub._users["alice"].get("INBOX")
    assert box is not None
    return box


def rows(listing: UidFlags | None, uids: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
    """(uid, system flag bits, keywords) of these messages (all if None) in a listing."""
    assert listing is not None
    found = listing.columns(listing.uids() if uids is None else uids)
    return [(uid, found.bits[at], found.keywords.get(at, "")) for at, uid in enumerate(found.uids)]


def stored_rows(box: MailboxState) -> list[tuple[int, int, str]]:
    """What the store has of every message."""
    return rows(messages.mailbox_contents(box.id).messages)


def kept_rows(box: MailboxState) -> list[tuple[int, int, str]]:
    """What the MailHub keeps of every message."""
    return rows(box.listing)


@pytest.fixture
def no_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store reads of FETCH: calls are recorded (a FETCH of flags should make none)."""
    reads: list[str] = []
    for name in ("load_summaries", "load_messages"):
        real = getattr(messages, name)

        def counted(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(messages, name, counted)
    return reads


# UidFlags itself


def test_rows_of_uids_some_of_which_are_gone() -> None:
    listing = UidFlags([(1, 8, ""), (2, 0, "$Junk"), (4, 9, ""), (7, 0, "a b")])
    assert rows(listing) == [(1, 8, ""), (2, 0, "$Junk"), (4, 9, ""), (7, 0, "a b")]
    assert rows(listing, [2, 3, 4, 7]) == [(2, 0, "$Junk"), (4, 9, ""), (7, 0, "a b")]  # 3 expunged
    assert listing.columns([2, 3, 4, 7]).keywords == {0: "$Junk", 2: "a b"}  # by position
    assert rows(listing, [5, 8]) == [] and rows(listing, []) == []
    assert listing.flags(5) is None and listing.flags(7) == (0, "a b")


def test_changes_to_a_listing() -> None:
    listing = UidFlags([(1, 0, ""), (2, 0, "")])
    listing.add([4, 2, 3], [(8, ""), (1, "x"), (0, "y")])  # 2 is there already
    assert rows(listing) == [(1, 0, ""), (2, 0, ""), (3, 0, "y"), (4, 8, "")]
    listing.set_flags(2, 4, "k")
    listing.set_flags(3, 1, "")
    listing.set_flags(9, 1, "ignored")
    assert rows(listing) == [(1, 0, ""), (2, 4, "k"), (3, 1, ""), (4, 8, "")]
    listing.remove({1, 2, 9})
    assert list(listing) == [3, 4] and listing.flags(2) is None and len(listing) == 2
    listing.remove({5})
    assert rows(listing, [3, 4]) == [(3, 1, ""), (4, 8, "")]


# FETCH of flags from memory


def test_flag_fetch_needs_no_store_read_and_sees_other_sessions(lab: ImapLab, no_reads: list[str]) -> None:
    for _ in range(3):
        lab.deliver()
    first, second = lab.client(), lab.client()
    first.select()
    second.select()
    assert second.send(b"s STORE 2 +FLAGS.SILENT (\\Seen $Label1)\r\n") == b"s OK STORE completed\r\n"
    assert first.send(b"f UID FETCH 1:* (UID FLAGS)\r\n") == (
        b"* 1 FETCH (UID 1 FLAGS ())\r\n"
        b"* 2 FETCH (UID 2 FLAGS ($Label1 \\Seen))\r\n"
        b"* 3 FETCH (UID 3 FLAGS ())\r\n"
        b"* 2 FETCH (FLAGS ($Label1 \\Seen) UID 2)\r\n"  # and the change, as before
        b"f OK FETCH completed\r\n"
    )
    assert second.send(b"s STORE 2 FLAGS.SILENT ()\r\n") == b"s OK STORE completed\r\n"
    assert first.send(b"f FETCH 2 FLAGS\r\n") == (
        b"* 2 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS () UID 2)\r\nf OK FETCH completed\r\n"
    )
    assert no_reads == []


def test_flag_fetch_from_memory_answers_as_the_store_does(lab: ImapLab, no_reads: list[str]) -> None:
    lab.deliver()
    lab.deliver(flags=["\\Seen", "work"])
    client = lab.client()
    client.select(recent=True)  # both \Recent here
    lab.deliver(flags=["\\Flagged"])
    client.send(b"n NOOP\r\n")  # numbers it
    queries = [b"f FETCH 1:* (FLAGS UID)\r\n", b"f UID FETCH 2:* FLAGS\r\n", b"f FETCH 2,3 (FLAGS)\r\n"]
    from_memory = [client.send(query) for query in queries]
    assert from_memory[0] == (
        b"* 1 FETCH (FLAGS (\\Recent) UID 1)\r\n* 2 FETCH (FLAGS (\\Recent \\Seen work) UID 2)\r\n"
        b"* 3 FETCH (FLAGS (\\Flagged \\Recent) UID 3)\r\nf OK FETCH completed\r\n"
    )
    assert no_reads == []
    inbox(lab).forget()
    assert [client.send(query) for query in queries] == from_memory
    assert no_reads == ["load_summaries"] * 3


def test_recent_is_per_session(lab: ImapLab) -> None:
    lab.deliver()
    first, second = lab.client(), lab.client()
    first.select(recent=True)
    second.select(recent=True)  # the first one claimed it
    assert first.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS (\\Recent))\r\nf OK FETCH completed\r\n"
    assert second.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    lab.deliver()  # \Recent to the first read-write session watching
    assert first.send(b"f FETCH 2 FLAGS\r\n") == (
        b"* 2 EXISTS\r\n* 2 RECENT\r\nf OK FETCH completed\r\n"  # numbered after the command
    )
    assert first.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\nf OK FETCH completed\r\n"
    )
    assert second.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 EXISTS\r\nf OK FETCH completed\r\n"
    )
    assert second.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    )


def test_messages_expunged_by_others_are_left_out_until_reported(lab: ImapLab, no_reads: list[str]) -> None:
    for _ in range(3):
        lab.deliver()
    first, second = lab.client(), lab.client()
    first.select()
    second.select()
    first.send(b"s STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    assert second.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ())\r\n* 3 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"  # no EXPUNGE in FETCH
    )
    assert second.send(b"f UID FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS () UID 1)\r\n* 3 FETCH (FLAGS () UID 3)\r\n* 2 EXPUNGE\r\nf OK FETCH completed\r\n"
    )
    assert second.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    )
    assert no_reads == []


def test_pipelined_store_and_fetch_are_answered_in_order(lab: ImapLab) -> None:
    """With a DB thread that answers late, a FETCH from memory still waits for the STORE before it."""
    lab.deliver()
    waiting: list[tuple[Deferred[Any], Callable[[], Any]]] = []

    class LaterDB:
        def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
            done: Deferred[Any] = Deferred()
            waiting.append((done, lambda: fn(*args, **kwargs)))
            return done

    def answer() -> None:
        while waiting:
            done, work = waiting.pop(0)
            done.callback(work())

    hub = MailHub(LaterDB(), lab.clock)
    client = Client(imap_factory(hub, lab.clock, alice_checker()))
    client.server.dataReceived(b"a LOGIN alice secret\r\ns SELECT INBOX\r\n")
    answer()
    client.received()
    client.server.dataReceived(b"t STORE 1 +FLAGS (\\Flagged)\r\nf FETCH 1 FLAGS\r\nn NOOP\r\n")
    assert client.received() == b""  # STORE waits for the store; nothing after it is read
    answer()
    assert client.received() == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\nt OK STORE completed\r\n"
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\nf OK FETCH completed\r\n"
        b"n OK NOOP completed\r\n"
    )


def test_a_deleted_mailbox_is_read_from_the_store(lab: ImapLab, no_reads: list[str]) -> None:
    first, second = lab.client(), lab.client()
    first.login()
    first.send(b"c CREATE Old\r\n")
    first.append(b"one\r\n", mailbox=b"Old")
    second.select(b"Old")
    assert first.send(b"d DELETE Old\r\n") == b"d OK DELETE completed\r\n"
    assert second.send(b"f FETCH 1 FLAGS\r\n") == b"f OK FETCH completed\r\n"  # as before: nothing left
    assert no_reads == ["load_summaries"]


# The listing follows every change


_operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["deliver", "append", "store", "expunge", "copy", "move", "move back", "other store"]
        ),
        st.integers(1, 6),
        st.sampled_from([b"+", b"-", b""]),
        st.sampled_from(
            [b"\\Seen", b"\\Deleted", b"\\Flagged $Label1", b"work", b"", b"\\Answered \\Draft x"]
        ),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_operations)
def test_the_listing_stays_what_the_store_has(operations: list[tuple[str, int, bytes, bytes]]) -> None:
    for _ in alice_database("sqlite"):
        lab = ImapLab()
        lab.deliver()
        first, second = lab.client(), lab.client()
        first.select()
        second.select()
        first.send(b"c CREATE Other\r\n")
        box = inbox(lab)
        for action, n, sign, flags in operations:
            if action == "deliver":
                lab.deliver(flags=flags.decode().split())
            elif action == "append":
                second.append(b"x\r\n", extra=b" (%b)" % flags)
            elif action in ("store", "other store"):
                client = first if action == "store" else second
                client.send(b"s UID STORE 1:%d %bFLAGS.SILENT (%b)\r\n" % (n, sign, flags))
            elif action == "expunge":
                first.send(b"e UID EXPUNGE 1:%d\r\n" % n)
            elif action == "copy":
                second.send(b"c UID COPY %d:* INBOX\r\n" % n)
            elif action == "move":
                first.send(b"m UID MOVE %d INBOX\r\n" % n)  # to the same mailbox: a new UID
            else:
                second.send(b"m UID MOVE %d:* Other\r\ns SELECT Other\r\nm UID MOVE 1:* INBOX\r\n" % n)
                second.send(b"s SELECT INBOX\r\n")
            assert kept_rows(box) == stored_rows(box)
        first.send(b"n NOOP\r\n")
        answer = first.send(b"f FETCH 1:* (UID FLAGS)\r\n")
        box.forget()
        assert first.send(b"f FETCH 1:* (UID FLAGS)\r\n") == answer


# Memory stays bounded


def test_listings_of_mailboxes_no_session_has_selected_are_dropped_beyond_the_limit(
    lab: ImapLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailhub_module, "IDLE_LISTED", 3 * mailhub_module.LISTING_OVERHEAD + 3)
    client, other = lab.client(), lab.client()
    client.login()
    for name in (b"A", b"B", b"C", b"D"):
        client.send(b"c CREATE %b\r\n" % name)
        client.append(b"one\r\n", mailbox=name)
        client.append(b"two\r\n", mailbox=name)
    other.select(b"A")
    account = lab.mailhub._users["alice"]
    boxes = {name: account.mailboxes[name] for name in ("A", "B", "C", "D", "INBOX")}
    for name in (b"B", b"C", b"D", b"INBOX"):
        client.send(b"s SELECT %b\r\n" % name)
    # A is selected by the other session; of B, C, D (2 messages each, not selected), the
    # oldest goes: 2 left, with 2 * (2 + overhead) within the limit.
    assert [name for name, box in boxes.items() if box.listing is not None] == ["A", "C", "D", "INBOX"]
    assert client.send(b"s SELECT B\r\nf FETCH 1:* FLAGS\r\n").endswith(
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    )
    assert boxes["B"].listing is not None and boxes["C"].listing is None
    client.disconnect()
    other.disconnect()
    assert "alice" not in lab.mailhub._users  # with the last session, everything goes
