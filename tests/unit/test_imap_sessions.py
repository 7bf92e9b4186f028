"""Several sessions on one mailbox: IDLE pushes, what others hear and when, sessions that ended."""

from __future__ import annotations

import pytest

from ygbridge.testing.imap import Client, ImapLab, first_client, running_lab

lab = pytest.fixture(running_lab, name="lab")
client = pytest.fixture(first_client, name="client")


def inbox_watchers(lab: ImapLab) -> set[object]:
    return set(lab.mailhub._users["alice"].mailboxes["INBOX"].watchers)


def test_idle_gets_exists_when_mail_is_delivered(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.select()
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n"
    assert lab.deliver() == 2
    assert client.received() == b"* 2 EXISTS\r\n* 1 RECENT\r\n"
    assert client.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"
    assert client.send(b"f FETCH 2 (UID)\r\n") == b"* 2 FETCH (UID 2)\r\nf OK FETCH completed\r\n"


def test_idle_wants_done(client: Client) -> None:
    client.select()
    client.send(b"i IDLE\r\n")
    assert client.send(b"x NOOP\r\n") == b"i BAD Expected DONE; IDLE terminated\r\n"


def test_idle_reports_what_happened_before_it(client: Client, lab: ImapLab) -> None:
    client.select()
    lab.deliver()
    assert client.received() == b""  # no command in progress: nothing is sent
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n* 1 EXISTS\r\n* 1 RECENT\r\n"


def test_idle_sessions_hear_flags_and_expunges_at_once(lab: ImapLab) -> None:
    first, second = lab.client(), lab.client()
    first.select()
    first.append(b"one\r\n")
    first.append(b"two\r\n")
    second.select()
    assert second.send(b"i IDLE\r\n") == b"+ idling\r\n"
    assert first.send(b"s STORE 1 +FLAGS (\\Deleted)\r\n") == (
        b"* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\ns OK STORE completed\r\n"  # first saw them arrive
    )
    assert second.received() == b"* 1 FETCH (FLAGS (\\Deleted) UID 1)\r\n"
    assert first.send(b"e EXPUNGE\r\n") == b"* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    assert second.received() == b"* 1 EXPUNGE\r\n"
    first.append(b"three\r\n")
    assert second.received() == b"* 2 EXISTS\r\n"
    assert second.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"
    assert (
        second.send(b"f FETCH 1:* UID\r\n")
        == b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\nf OK FETCH completed\r\n"
    )


def test_others_hear_changes_at_their_next_command(lab: ImapLab) -> None:
    first, second = lab.client(), lab.client()
    for _ in range(3):
        lab.deliver()
    first.select()
    second.select()
    first.send(b"s STORE 1,3 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    first.send(b"s STORE 1 +FLAGS.SILENT (\\Flagged)\r\n")  # UID 2, number 2 for the second session
    lab.deliver()
    assert second.received() == b""
    # EXPUNGE is not sent during FETCH, STORE or SEARCH: their numbers still hold there
    # (a message expunged meanwhile is left out).
    assert second.send(b"f FETCH 2:3 UID\r\n") == (
        b"* 2 FETCH (UID 2)\r\n* 4 EXISTS\r\n* 2 FETCH (FLAGS (\\Flagged) UID 2)\r\nf OK FETCH completed\r\n"
    )
    assert second.send(b"s SEARCH ALL\r\n") == b"* SEARCH 2 4\r\ns OK SEARCH completed\r\n"
    # UID FETCH may, as any other command.
    assert second.send(b"f UID FETCH 4 UID\r\n") == (
        b"* 4 FETCH (UID 4)\r\n* 1 EXPUNGE\r\n* 2 EXPUNGE\r\nf OK FETCH completed\r\n"
    )
    assert (
        second.send(b"f FETCH 1:* UID\r\n")
        == b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )


def test_store_in_another_session_does_not_echo_to_itself(lab: ImapLab) -> None:
    first, second = lab.client(), lab.client()
    lab.deliver()
    first.select()
    second.select()
    assert first.send(b"s STORE 1 +FLAGS.SILENT (\\Seen)\r\nn NOOP\r\n") == (
        b"s OK STORE completed\r\nn OK NOOP completed\r\n"
    )
    assert second.send(b"n NOOP\r\n") == b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\nn OK NOOP completed\r\n"
    assert first.send(b"s STORE 1 +FLAGS.SILENT (\\Seen)\r\n") == b"s OK STORE completed\r\n"
    assert second.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"  # nothing changed


def test_lost_connection_is_no_longer_notified(client: Client, lab: ImapLab) -> None:
    client.select()
    client.send(b"i IDLE\r\n")
    assert len(inbox_watchers(lab)) == 1
    client.disconnect()
    lab.deliver()
    assert client.received() == b""
    assert "alice" not in lab.mailhub._users  # the last session let go of the live state


def test_selecting_another_mailbox_stops_notifications(client: Client, lab: ImapLab) -> None:
    client.select()
    assert len(inbox_watchers(lab)) == 1
    client.send(b"s SELECT Sent\r\n")
    assert inbox_watchers(lab) == set()
    lab.deliver()
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"


def test_timeout_lets_go_of_the_mailbox(client: Client, lab: ImapLab) -> None:
    client.select()
    lab.clock.advance(30 * 60)
    assert client.received() == b"* BYE Autologout; connection idle too long\r\n"
    assert client.transport.disconnecting
    client.disconnect()
    assert "alice" not in lab.mailhub._users


def test_recent_belongs_to_the_first_session_that_selects(lab: ImapLab) -> None:
    """RFC 3501 2.3.2: \\Recent in exactly one session; EXAMINE and STATUS do not claim it."""
    lab.deliver(), lab.deliver(flags=["\\Seen"])
    watcher, examiner, first, second = lab.client(), lab.client(), lab.client(), lab.client()
    watcher.login()
    status = b"t STATUS INBOX (RECENT)\r\n"
    assert watcher.send(status) == b'* STATUS "INBOX" (RECENT 2)\r\nt OK STATUS completed\r\n'
    examiner.login()
    assert b"* 2 RECENT\r\n" in examiner.send(b"e EXAMINE INBOX\r\n")
    assert examiner.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    first.login()
    assert b"* 2 RECENT\r\n" in first.send(b"s SELECT INBOX\r\n")
    assert watcher.send(status) == b'* STATUS "INBOX" (RECENT 0)\r\nt OK STATUS completed\r\n'
    second.login()
    assert b"* 0 RECENT\r\n" in second.send(b"s SELECT INBOX\r\n")
    assert first.send(b"f FETCH 1:2 FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS (\\Recent \\Seen))\r\nf OK FETCH completed\r\n"
    )
    assert second.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"
    lab.deliver()  # arrives while both have it selected: recent to the first only
    assert first.send(b"n NOOP\r\n") == b"* 3 EXISTS\r\n* 3 RECENT\r\nn OK NOOP completed\r\n"
    assert second.send(b"n NOOP\r\n") == b"* 3 EXISTS\r\nn OK NOOP completed\r\n"
    for key, first_answer, second_answer in (
        (b"RECENT", b" 1 2 3", b""),
        (b"NEW", b" 1 3", b""),
        (b"OLD", b"", b" 1 2 3"),
        (b"NOT RECENT SEEN", b"", b" 2"),
    ):
        answer = b"* SEARCH%b\r\ns OK SEARCH completed\r\n"
        assert first.send(b"s SEARCH %b\r\n" % key) == answer % first_answer
        assert second.send(b"s SEARCH %b\r\n" % key) == answer % second_answer
    third = lab.client()
    third.login()
    # the first session claimed the new message in the store too
    assert b"* 0 RECENT\r\n" in third.send(b"s SELECT INBOX\r\n")
