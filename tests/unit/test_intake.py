"""Intake: trace lines on every path, the visible-sender rule, and `[mesh] foreign_from`."""

import ipaddress

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.errors import SenderMismatch
from ygbridge.intake import WARN, Intake
from ygbridge.mailhub import MailHub
from ygbridge.notify import SUCCESS, DsnRequest, Notify
from ygbridge.store import queue
from ygbridge.store.models import Message
from ygbridge.testing.store import ImmediateDB, make_user, memory_database

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
PEER = ipaddress.IPv6Address("207:c9a6:2274:54f4:63df:eb39:2d22:3d1")
ALICE, BOB = MailAddress("alice", NODE), MailAddress("bob", PEER)


def _intake(foreign_from: str = "refuse") -> Intake:
    memory_database()
    make_user("alice")
    clock = Clock()
    clock.advance(1_700_000_000)
    db = ImmediateDB()
    return Intake(clock, db, MailHub(db, clock), lambda: NODE, lambda *_: None, foreign_from=foreign_from)


def _run(coroutine: object) -> None:
    Deferred.fromCoroutine(coroutine).result  # noqa: B018  (ImmediateDB: done at once, or raises)


def _stored() -> list[bytes]:
    return [bytes(m.body) for m in Message.select()]


def test_mesh_delivery_gets_return_path_then_received() -> None:
    intake = _intake()
    body = f"From: Bob <{BOB}>\r\nSubject: hi\r\n\r\nx\r\n".encode()
    _run(intake.deliver_local(["alice"], body, None, PEER, reverse_path=str(BOB)))
    [stored] = _stored()
    lines = stored.split(b"\r\n")
    assert lines[0] == f"Return-Path: <{BOB}>".encode()
    assert lines[1] == f"Received: from {domain_for(PEER)}".encode()
    assert stored.endswith(b"\r\n" + body)


def test_mesh_foreign_from_refused_or_warned() -> None:
    body = f"From: <bob@{domain_for(NODE)}>\r\n\r\nx\r\n".encode()
    intake = _intake()
    failure = Deferred.fromCoroutine(intake.deliver_local(["alice"], body, None, PEER, ""))
    assert isinstance(failure.result.value, SenderMismatch)
    failure.addErrback(lambda _: None)
    assert _stored() == []
    _run(_intake(WARN).deliver_local(["alice"], body, None, PEER, ""))
    [stored] = _stored()
    assert stored.startswith(b"Return-Path: <>\r\nReceived: ")
    assert b"\r\nX-Ygbridge-Warning: ygbridge could not verify the sender: From: bob@" in stored
    assert stored.endswith(body)


def test_submission_adds_a_missing_from_and_traces_both_paths() -> None:
    intake = _intake()
    body = b"Message-ID: <m@x>\r\nSubject: hi\r\n\r\nx\r\n"
    _run(intake.accept(ALICE, [ALICE, BOB], body))
    [stored] = _stored()
    assert stored.startswith(
        f"Return-Path: <{ALICE}>\r\nReceived: from {domain_for(NODE)} (authenticated user alice)".encode()
    )
    assert stored.endswith(f"From: <{ALICE}>\r\n".encode() + body)
    queued = queue.next_due(PEER.compressed, 2e9)
    assert queued is not None and queued.body.startswith(b"Received: ")
    assert queued.body == stored.split(b"\r\n", 1)[1]  # the same bytes, less the Return-Path


def test_submission_refuses_another_visible_sender() -> None:
    intake = _intake()
    for head in (f"From: {BOB}\r\n", f"Sender: {BOB}\r\n"):  # without From:, Sender: still counts
        failure = Deferred.fromCoroutine(intake.accept(ALICE, [BOB], f"{head}\r\nx\r\n".encode()))
        assert isinstance(failure.result.value, SenderMismatch)
        failure.addErrback(lambda _: None)
    assert queue.summary() == []


def test_mesh_without_a_reverse_path_has_no_return_path() -> None:
    intake = _intake()
    _run(intake.deliver_local(["alice"], f"From: {BOB}\r\n\r\nx\r\n".encode(), None, PEER))
    [stored] = _stored()
    assert stored.startswith(b"Received: ")


def test_delivered_report_for_a_local_recipient_who_asked() -> None:
    intake = _intake()
    make_user("carol")
    carol = MailAddress("carol", NODE)
    request = DsnRequest(
        envid="E-1", recipients={str(carol): Notify(frozenset({SUCCESS}), f"rfc822;{carol}")}
    )
    _run(
        intake.accept(
            ALICE, [carol, ALICE], f"From: {ALICE}\r\nMessage-ID: <m@x>\r\n\r\nx\r\n".encode(), request
        )
    )
    reports = [b for b in _stored() if b"multipart/report" in b]
    [report] = reports  # for carol, who asked; not for alice, who did not
    assert report.startswith(b"Return-Path: <>\r\n")
    assert b"Subject: Successful Mail Delivery Report" in report
    assert b"Action: delivered\r\nStatus: 2.0.0" in report
    assert f"Original-Recipient: rfc822; {carol}\r\nFinal-Recipient: rfc822; {carol}".encode() in report
    assert b"Original-Envelope-Id: E-1\r\n" in report
    assert len(_stored()) == 3  # alice's copy, carol's copy, alice's report


def test_delivered_report_for_mesh_mail_goes_back_over_the_mesh() -> None:
    intake = _intake()
    request = DsnRequest(recipients={str(ALICE): Notify(frozenset({SUCCESS}))})
    body = f"From: {BOB}\r\nMessage-ID: <m@y>\r\n\r\nx\r\n".encode()
    for _ in range(2):  # a retry after a lost 250 stores nothing new and reports nothing new
        _run(intake.deliver_local(["alice"], body, "<m@y>", PEER, reverse_path=str(BOB), dsn=request))
    assert queue.summary()[0].recipients == 1
    queued = queue.next_due(PEER.compressed, 2e9)
    assert queued is not None and queued.sender == ""  # the null sender: a report never bounces
    assert [r for _, r in queued.recipients] == [str(BOB)]
    assert b"Action: delivered" in queued.body and b"<m@y>" in queued.body
    # a retried delivery reports under the same Message-ID, so the sender's node stores it once
    assert queued.message_id is not None and queued.message_id.startswith("<dsn-")
