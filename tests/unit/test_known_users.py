"""The RCPT checks' memory of existing users (task.Clock), and mail for a user deleted meanwhile."""

from __future__ import annotations

from smtpsession import BOB, ME, NODE, PEER, Node
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.intake import Intake
from ygbridge.knownusers import KnownUsers
from ygbridge.mailhub import MailHub
from ygbridge.notify import NEVER, DsnRequest, Notify
from ygbridge.store import queue, users
from ygbridge.store.models import Message
from ygbridge.testing.store import ImmediateDB, make_user, memory_database

ALICE, CAROL = MailAddress("alice", NODE), MailAddress("carol", NODE)


class Directory:
    """The users of a node, counting the lookups; ``later``: each answer waits for the test."""

    def __init__(self, *names: str, later: bool = False) -> None:
        self.names = set(names)
        self.asked: list[list[str]] = []
        self.later = later
        self.waiting: list[Deferred[set[str]]] = []

    def lookup(self, names: list[str]) -> Deferred[set[str]]:
        self.asked.append(names)
        found = self.names.intersection(names)
        if not self.later:
            return succeed(found)
        answer: Deferred[set[str]] = Deferred()
        self.waiting.append(answer)
        answer.addCallback(lambda _: found)
        return answer


def _existing(known: KnownUsers, *names: str) -> set[str]:
    result: set[str] = Deferred.fromCoroutine(known.existing(list(names))).result
    return result


def test_a_user_found_is_remembered_for_the_ttl_only() -> None:
    clock, directory = Clock(), Directory("alice", "bob")
    known = KnownUsers(clock, directory.lookup, ttl=10)
    assert _existing(known, "alice", "carol") == {"alice"}
    clock.advance(9.9)
    assert _existing(known, "alice") == {"alice"} and directory.asked == [["alice", "carol"]]
    directory.names.discard("alice")  # `ygbridge user del alice`, in another process
    clock.advance(0.1)
    assert _existing(known, "alice", "bob") == {"bob"}
    assert directory.asked[-1] == ["alice", "bob"] and len(known) == 1


def test_a_missing_user_is_not_remembered() -> None:
    clock, directory = Clock(), Directory()
    known = KnownUsers(clock, directory.lookup, ttl=10)
    assert _existing(known, "carol") == set()
    directory.names.add("carol")  # `ygbridge user add carol`: mail for her is taken at once
    assert _existing(known, "carol") == {"carol"}
    assert len(directory.asked) == 2


def test_the_ttl_counts_from_before_a_slow_lookup() -> None:
    clock, directory = Clock(), Directory("alice", later=True)
    known = KnownUsers(clock, directory.lookup, ttl=10)
    asked = Deferred.fromCoroutine(known.existing(["alice"]))
    clock.advance(4)  # the DB thread was busy
    directory.waiting.pop().callback(None)
    assert asked.result == {"alice"}
    clock.advance(6)
    Deferred.fromCoroutine(known.existing(["alice"]))
    assert len(directory.asked) == 2  # 10 s after the lookup began, not after it answered


def test_at_most_size_names_are_kept_the_least_recently_asked_leaving_first() -> None:
    clock, directory = Clock(), Directory("a", "b", "c")
    known = KnownUsers(clock, directory.lookup, ttl=10, size=2)
    _existing(known, "a")
    _existing(known, "b")
    _existing(known, "a")  # a was asked for last: b leaves for c
    _existing(known, "c")
    assert len(known) == 2
    directory.asked.clear()
    assert _existing(known, "a", "b", "c") == {"a", "b", "c"} and directory.asked == [["b"]]


def test_no_ttl_looks_up_every_time_and_forget_drops_a_name() -> None:
    clock, directory = Clock(), Directory("alice")
    known = KnownUsers(clock, directory.lookup, ttl=0)
    _existing(known, "alice")
    _existing(known, "alice")
    assert len(directory.asked) == 2 and len(known) == 0
    cached = KnownUsers(clock, directory.lookup, ttl=10)
    _existing(cached, "alice")
    cached.forget("alice")
    _existing(cached, "alice")
    assert len(directory.asked) == 4


# A user deleted after RCPT accepted them: the message is stored for the others, the sender told


def _intake() -> Intake:
    memory_database()
    make_user("alice")
    make_user("carol")
    clock = Clock()
    clock.advance(1_700_000_000)
    db = ImmediateDB()
    return Intake(clock, db, MailHub(db, clock), lambda: NODE, lambda *_: None, user_cache=10)


def _run(coroutine: object) -> object:
    return Deferred.fromCoroutine(coroutine).result  # ImmediateDB: done at once, or raises


def _inbox(name: str) -> list[bytes]:
    return [bytes(m.body) for m in Message.select() if m.mailbox.user.name == name]


def test_mesh_mail_for_a_user_deleted_since_rcpt_is_bounced_to_its_sender() -> None:
    intake = _intake()
    assert _run(intake.local_users(["alice", "carol"])) == {"alice", "carol"}
    users.delete_user("carol")
    assert _run(intake.local_users(["carol"])) == {"carol"}  # still remembered
    body = f"From: {BOB}\r\nMessage-ID: <m@y>\r\n\r\nx\r\n".encode()
    _run(intake.deliver_local(["carol", "alice"], body, "<m@y>", PEER, reverse_path=str(BOB)))
    assert len(_inbox("alice")) == 1
    queued = queue.next_due(PEER.compressed, 2e9)
    assert queued is not None and queued.sender == "" and [r for _, r in queued.recipients] == [str(BOB)]
    assert b"Action: failed\r\nStatus: 5.1.1" in queued.body
    assert f"Final-Recipient: rfc822; {CAROL}".encode() in queued.body
    assert b"the account was deleted" in queued.body and b"<m@y>" in queued.body
    assert _run(intake.local_users(["carol"])) == set()  # forgotten: the next RCPT is refused


def test_a_bounce_for_a_deleted_user_is_dropped_and_never_reported() -> None:
    intake = _intake()
    _run(intake.local_users(["carol"]))
    users.delete_user("carol")
    body = f"From: {BOB}\r\nMessage-ID: <m@y>\r\n\r\nx\r\n".encode()
    _run(intake.deliver_local(["carol"], body, "<m@y>", PEER, reverse_path=""))  # the null sender
    never = DsnRequest(recipients={str(CAROL): Notify(frozenset({NEVER}))})
    _run(intake.deliver_local(["carol"], body, "<m@y>", PEER, reverse_path=str(BOB), dsn=never))
    assert queue.next_due(PEER.compressed, 2e9) is None and Message.select().count() == 0


def test_submitted_mail_for_a_user_deleted_since_rcpt_bounces_into_the_senders_inbox() -> None:
    intake = _intake()
    _run(intake.local_users(["carol"]))
    users.delete_user("carol")
    _run(intake.accept(ALICE, [CAROL], f"From: {ALICE}\r\nMessage-ID: <m@x>\r\n\r\nx\r\n".encode()))
    [report] = _inbox("alice")
    assert report.startswith(b"Return-Path: <>\r\n")
    assert b"Subject: Undelivered Mail Returned to Sender" in report
    assert b"Action: failed\r\nStatus: 5.1.1" in report and f"{CAROL}".encode() in report


def test_over_smtp_the_deleted_users_message_is_accepted_and_bounced() -> None:
    node = Node(user_cache=10)
    make_user("dave")
    session = node.connect(node.mesh, PEER)
    session.say(b"EHLO peer")
    dave = f"dave@{domain_for(NODE)}"
    assert session.say(f"MAIL FROM:<{BOB}>".encode(), f"RCPT TO:<{dave}>".encode()).startswith(b"250")
    session.say(b"RSET")
    users.delete_user("dave")
    body = f"From: {BOB}\r\nSubject: hi\r\n\r\nhi\r\n".encode()
    session.say(f"MAIL FROM:<{BOB}>".encode(), f"RCPT TO:<{dave}>".encode(), f"RCPT TO:<{ME}>".encode())
    assert session.send(b"BDAT %d LAST\r\n" % len(body) + body) == b"250 2.0.0 Message accepted\r\n"
    assert len(_inbox("alice")) == 1 and queue.next_due(PEER.compressed, 2e9) is not None
    session.say(b"RSET")
    assert session.say(f"MAIL FROM:<{BOB}>".encode(), f"RCPT TO:<{dave}>".encode()).startswith(
        b"250 2.1.0 Sender OK\r\n550 5.1.1 "
    )


def test_intake_defaults_to_looking_up_every_time() -> None:
    memory_database()
    make_user("alice")
    clock, db = Clock(), ImmediateDB()
    intake = Intake(clock, db, MailHub(db, clock), lambda: NODE, lambda *_: None)
    assert _run(intake.local_users(["alice"])) == {"alice"}
    users.delete_user("alice")
    assert _run(intake.local_users(["alice"])) == set()
