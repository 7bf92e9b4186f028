"""The outgoing queue's hand-written statements (store.queue, store.sql), on SQLite and PostgreSQL:
what enqueue hands to delivery is what the queue reads back, and remove forgets exactly what it is
told to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ygbridge.notify import DsnRequest, Notify
from ygbridge.store import queue, sql
from ygbridge.store.models import OutgoingMessage, OutgoingRecipient
from ygbridge.testing.store import alice_database

P, Q = "200::1", "200::2"


@pytest.fixture(autouse=True)
def db(store_backend: str) -> Iterator[None]:
    yield from alice_database(store_backend)


def test_enqueue_hands_over_what_the_queue_reads_back() -> None:
    dsn = DsnRequest("HDRS", "env 1", {"c@q": Notify(frozenset({"SUCCESS", "DELAY"}), "rfc822;c@q")})
    recipients = [("b@p", P), ("c@q", Q), ("d@p", P)]
    handed = queue.enqueue("a@x", b"\x00body\xff\r\n", "<1@x>", recipients, 5.0, dsn)
    assert [destination for destination, _ in handed] == [P, Q]
    for destination, message in handed:
        assert queue.due_messages(destination, 5.0) == [message]
    by_destination = dict(handed)
    assert [address for _, address in by_destination[P].recipients] == ["b@p", "d@p"]
    assert by_destination[Q].dsn == DsnRequest("HDRS", "env 1", {"c@q": dsn.notify("c@q")})
    assert by_destination[P].dsn == DsnRequest("HDRS", "env 1", {})
    assert (by_destination[P].attempts, by_destination[P].warned, by_destination[P].last_error) == (
        0,
        False,
        None,
    )
    assert by_destination[P].body == b"\x00body\xff\r\n" and by_destination[P].created == 5.0


def test_enqueue_without_a_message_id_or_request() -> None:
    ((_, message),) = queue.enqueue("", b"report\r\n", None, [("b@p", P)], 1.0)
    assert queue.due_messages(P, 1.0) == [message]
    assert (message.sender, message.message_id, message.dsn) == ("", None, DsnRequest())


def test_remove_forgets_recipients_then_the_message() -> None:
    handed = dict(queue.enqueue("a@x", b"m\r\n", "<1@x>", [("b@p", P), ("c@q", Q)], 0.0))
    queue.remove(handed[P].id, [])
    assert OutgoingRecipient.select().count() == 2
    queue.remove(handed[P].id, [rid for rid, _ in handed[P].recipients])
    assert queue.due_messages(P, 0.0) == [] and queue.due_messages(Q, 0.0) == [handed[Q]]
    assert OutgoingMessage.select().count() == 1
    queue.remove(handed[Q].id, [rid for rid, _ in handed[Q].recipients])
    assert (OutgoingMessage.select().count(), OutgoingRecipient.select().count()) == (0, 0)


def test_int_list_writes_numbers_only() -> None:
    assert sql.int_list([3, 1]) == "(3,1)"
    assert sql.int_list([]) == "(NULL)"
    assert not sql.exists('SELECT 1 FROM "outgoing_message" WHERE "id" IN ' + sql.int_list([]), ())
    with pytest.raises(ValueError):
        sql.int_list(["1) OR (1=1"])  # type: ignore[list-item]
