"""The queue runner against an in-memory store, a fake peer and a Clock."""

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from ygbridge.delivery import DeliveryService, backoff
from ygbridge.dsn import FAILED, RecipientFailure
from ygbridge.notify import DsnRequest, Notify, parse_rcpt_params
from ygbridge.outcome import Reply
from ygbridge.store import queue
from ygbridge.testing.delivery import HANG, FakePeer
from ygbridge.testing.store import ImmediateDB, memory_database

PEER = "203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47"
OK = Reply(250, "2.0.0 stored")


class Reports:
    """Records the delivery status notifications the runner asks for, failed ones in ``reports``."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, list[RecipientFailure]]] = []
        self.delays: list[tuple[int, list[RecipientFailure]]] = []

    def __call__(
        self, message: queue.QueuedMessage, failures: list[RecipientFailure], action: str
    ) -> Deferred:
        (self.reports if action == FAILED else self.delays).append((message.id, failures))
        return succeed(None)


def _service(
    peer: FakePeer,
    clock: Clock,
    bounces: Reports | None = None,
    delay_warning: float = 0.0,
    diagnosis: str | None = None,
) -> DeliveryService:
    memory_database()
    peer.clock = clock
    return DeliveryService(
        clock,
        ImmediateDB(),
        peer.send,
        bounces or Reports(),
        interval=5,
        retry_initial=2,
        retry_max=60,
        horizon=100,
        delay_warning=delay_warning,
        jitter=lambda: 0.5,
        diagnose=lambda _: succeed(diagnosis),
    )


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff(n, 2, 60, 0.5) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff(0, 2, 60, 0.0) == 1.5 and backoff(0, 2, 60, 0.999) < 2.5


def test_delivered_message_leaves_the_queue_only_after_250() -> None:
    clock = Clock()
    peer = FakePeer(ConnectionRefusedError("peer down"), OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"Subject: 1\r\n\r\nx\r\n", "<1@x>", [("b@y.meship", PEER)], 0.0)
    service.startService()
    assert len(peer.sent) == 1
    [pending] = queue.summary()
    assert pending.last_error == f"{PEER} refused the connection: no mail service listens on its port"
    assert pending.recipients == 1
    assert pending.next_attempt == 2.0
    clock.advance(1)
    service.poke(PEER)  # not due yet: poking does not bypass the backoff
    assert len(peer.sent) == 1
    clock.advance(4)  # next tick after the retry time
    assert len(peer.sent) == 2
    assert queue.summary() == []
    service.stopService()


def test_per_recipient_results_are_honoured() -> None:
    clock = Clock()
    temporary = Reply(451, "4.3.0 later")
    peer = FakePeer({"b@y.meship": OK, "c@y.meship": temporary, "d@y.meship": Reply(550, "5.1.1 no")})
    bounces = Reports()
    service = _service(peer, clock, bounces)
    queue.enqueue(
        "a@x.meship", b"m\r\n", None, [(r, PEER) for r in ("b@y.meship", "c@y.meship", "d@y.meship")], 0
    )
    service.startService()
    assert peer.sent[0][1] == ["b@y.meship", "c@y.meship", "d@y.meship"]
    left = queue.next_due(PEER, 100.0)
    assert left is not None and [r for _, r in left.recipients] == ["c@y.meship"]
    [(_, [failure])] = bounces.reports  # exactly one report, for the permanent failure only
    assert (failure.recipient, failure.status) == ("d@y.meship", "5.1.1")
    assert "550 5.1.1 no" in failure.diagnostic
    service.stopService()


def test_retry_horizon_bounces_once_and_empties_the_queue() -> None:
    clock = Clock()
    peer = FakePeer(*[ConnectionRefusedError("peer down")] * 20)
    bounces = Reports()
    service = _service(peer, clock, bounces)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()
    for _ in range(40):
        clock.advance(5)
    assert queue.summary() == []
    [(_, [failure])] = bounces.reports
    assert failure.status == "4.4.7"
    assert (
        failure.diagnostic == f"not delivered within 1.7 minutes: {PEER} refused the connection: "
        "no mail service listens on its port"
    )
    assert all(at < 100 for at in peer.attempt_times)  # never tried after the horizon
    service.stopService()


def test_reachable_again_skips_the_backoff() -> None:
    clock = Clock()
    peer = FakePeer(ConnectionRefusedError("peer down"), ConnectionRefusedError("peer down"), OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()
    clock.advance(5)  # second failure at the next tick: next attempt 4 s later
    assert len(peer.sent) == 2
    service.retry_now(PEER)
    assert len(peer.sent) == 3 and queue.summary() == []
    service.retry_now(PEER)  # nothing queued: nothing sent
    assert len(peer.sent) == 3
    service.stopService()


def test_oldest_first_and_all_due_messages_in_one_run() -> None:
    clock = Clock()
    peer = FakePeer(OK, OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"first\r\n", None, [("b@y.meship", PEER)], 0)
    queue.enqueue("a@x.meship", b"second\r\n", None, [("b@y.meship", PEER)], 0)
    service.startService()
    assert [body for _, _, body in peer.sent] == [b"first\r\n", b"second\r\n"]
    service.stopService()


def test_reappearing_node_abandons_the_hung_attempt_and_retries_at_once() -> None:
    clock = Clock()
    peer = FakePeer(HANG, OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()
    assert len(peer.sent) == 1 and queue.summary() != []
    service.retry_now(PEER)
    assert len(peer.sent) == 2
    assert queue.summary() == []
    service.stopService()


def test_once_the_node_answers_its_whole_queue_follows() -> None:
    clock = Clock()
    peer = FakePeer(ConnectionRefusedError("down"), OK, OK, OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"old\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()  # fails: the first message backs off
    for body, mid in ((b"new1\r\n", "<2@x>"), (b"new2\r\n", "<3@x>")):
        queue.enqueue("a@x.meship", body, mid, [("b@y.meship", PEER)], 0)
    queue.postpone([2, 3], "backing off", 1000.0)  # recipient rows 2 and 3: their own backoff is long
    clock.advance(5)  # the old one is due again and succeeds; the others follow it at once
    assert [body for _, _, body in peer.sent] == [b"old\r\n", b"old\r\n", b"new1\r\n", b"new2\r\n"]
    assert queue.summary() == []
    service.stopService()


def test_delay_warning_is_sent_once() -> None:
    clock = Clock()
    peer = FakePeer(*[ConnectionRefusedError("peer down")] * 20)
    reports = Reports()
    service = _service(peer, clock, reports, delay_warning=30)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()
    for _ in range(8):  # 40 s: past the warning time, before the horizon
        clock.advance(5)
    [(_, [delayed])] = reports.delays
    assert delayed.recipient == "b@y.meship" and delayed.status.startswith("4.")
    assert reports.reports == [] and queue.summary() != []
    service.stopService()


def test_the_routers_view_names_the_cause_in_words() -> None:
    clock = Clock()
    why = "peer down: failed to connect: incompatible version"
    peer = FakePeer(*[defer.TimeoutError()] * 20)
    bounces = Reports()
    service = _service(peer, clock, bounces, diagnosis=why)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER)], 0)
    service.startService()
    [pending] = queue.summary()
    assert pending.last_error == f"{why} (no answer from {PEER} in time)"
    for _ in range(40):
        clock.advance(5)
    [(_, [failure])] = bounces.reports
    assert failure.diagnostic == f"not delivered within 1.7 minutes: {why} (no answer from {PEER} in time)"
    service.stopService()


def test_the_request_travels_with_the_message_and_notify_decides_who_hears() -> None:
    clock = Clock()
    request = DsnRequest(
        ret="FULL",
        envid="e1",
        recipients={
            "b@y.meship": Notify(frozenset({"NEVER"})),
            "c@y.meship": Notify(frozenset({"SUCCESS"}), "rfc822;c@y.meship"),
        },
    )
    peer = FakePeer(
        {
            "b@y.meship": Reply(550, "5.1.1 no"),
            "c@y.meship": Reply(550, "5.1.1 no"),
            "d@y.meship": Reply(550, "5.1.1 no"),
        }
    )
    bounces = Reports()
    service = _service(peer, clock, bounces)
    rcpts = [(r, PEER) for r in ("b@y.meship", "c@y.meship", "d@y.meship")]
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", rcpts, 0, request)
    service.startService()
    assert peer.dsn == [request]
    [(_, told)] = bounces.reports  # NEVER and SUCCESS-only recipients are not told of failures
    assert [f.recipient for f in told] == ["d@y.meship"]
    assert queue.summary() == []
    service.stopService()


def test_delay_warnings_only_where_delay_is_wanted() -> None:
    clock = Clock()
    request = DsnRequest(recipients={"b@y.meship": Notify(frozenset({"FAILURE"}))})
    peer = FakePeer(*[ConnectionRefusedError("peer down")] * 20)
    reports = Reports()
    service = _service(peer, clock, reports, delay_warning=30)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [("b@y.meship", PEER), ("c@y.meship", PEER)], 0, request)
    service.startService()
    for _ in range(8):
        clock.advance(5)
    [(_, [delayed])] = reports.delays
    assert delayed.recipient == "c@y.meship"
    service.stopService()


def test_notify_delay_alone_is_warned_and_never_told_of_the_expiry() -> None:
    """Each recipient as RCPT TO asked: DELAY alone, FAILURE alone, or nothing (both)."""
    clock = Clock()
    asked = {"delay@y.meship": "NOTIFY=DELAY", "failure@y.meship": "NOTIFY=failure", "default@y.meship": None}
    request = DsnRequest(
        recipients={rcpt: parse_rcpt_params([param]) for rcpt, param in asked.items() if param is not None}
    )
    peer = FakePeer(*[ConnectionRefusedError("peer down")] * 40)
    reports = Reports()
    service = _service(peer, clock, reports, delay_warning=30)
    queue.enqueue("a@x.meship", b"m\r\n", "<1@x>", [(rcpt, PEER) for rcpt in asked], 0, request)
    service.startService()
    for _ in range(8):  # 40 s: past the warning time, before the horizon
        clock.advance(5)
    [(_, delayed)] = reports.delays
    assert sorted(f.recipient for f in delayed) == ["default@y.meship", "delay@y.meship"]
    assert reports.reports == []
    for _ in range(32):  # 200 s: past the horizon (100 s)
        clock.advance(5)
    assert queue.summary() == [] and len(reports.delays) == 1
    [(_, failed)] = reports.reports
    assert sorted(f.recipient for f in failed) == ["default@y.meship", "failure@y.meship"]
    assert all(f.status == "4.4.7" for f in failed)
    service.stopService()


def test_up_to_four_attempts_per_node_run_at_once_and_a_failure_stops_new_ones() -> None:
    clock = Clock()
    pending: list[Deferred] = [Deferred() for _ in range(5)]
    peer = FakePeer(*pending, OK)
    service = _service(peer, clock)
    for n in range(6):
        queue.enqueue("a@x.meship", b"%d\r\n" % n, f"<{n}@x>", [("b@y.meship", PEER)], 0.0)
    service.startService()
    assert [body for _, _, body in peer.sent] == [b"0\r\n", b"1\r\n", b"2\r\n", b"3\r\n"]
    pending[1].callback({"b@y.meship": OK})  # one ends: the next message takes its place
    assert [body for _, _, body in peer.sent][4:] == [b"4\r\n"]
    pending[0].errback(ConnectionRefusedError("gone"))  # the node stops answering: nothing new starts
    for waiting in pending[2:]:
        waiting.callback({"b@y.meship": OK})
    assert len(peer.sent) == 5
    assert [m.recipients[0][1] for m in queue.due_messages(PEER, 1e9, force=True, limit=9)] == [
        "b@y.meship",
        "b@y.meship",
    ]  # message 0 (postponed) and 5 (never tried) are left
    service.stopService()


def test_retry_now_abandons_every_attempt_in_flight() -> None:
    clock = Clock()
    peer = FakePeer(HANG, HANG, OK, OK)
    service = _service(peer, clock)
    for n in range(2):
        queue.enqueue("a@x.meship", b"%d\r\n" % n, f"<{n}@x>", [("b@y.meship", PEER)], 0.0)
    service.startService()
    assert len(peer.sent) == 2
    service.retry_now(PEER)
    assert len(peer.sent) == 4 and queue.summary() == []
    service.stopService()


def test_new_mail_goes_beside_an_attempt_in_flight() -> None:
    clock = Clock()
    first: Deferred = Deferred()
    peer = FakePeer(first, OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"1\r\n", "<1@x>", [("b@y.meship", PEER)], 0.0)
    service.startService()
    assert len(peer.sent) == 1
    queue.enqueue("a@x.meship", b"2\r\n", "<2@x>", [("b@y.meship", PEER)], 0.0)
    service.poke(PEER)  # the drain under way picks it up on a second connection
    assert [body for _, _, body in peer.sent] == [b"1\r\n", b"2\r\n"]
    first.callback({"b@y.meship": OK})
    assert queue.summary() == []
    service.stopService()


def test_a_connection_from_the_node_wakes_waiting_mail_and_cancels_nothing() -> None:
    clock = Clock()
    first: Deferred = Deferred()
    peer = FakePeer(ConnectionRefusedError("down"), first, OK)
    service = _service(peer, clock)
    queue.enqueue("a@x.meship", b"1\r\n", "<1@x>", [("b@y.meship", PEER)], 0.0)
    service.startService()  # fails: backs off for seconds
    service.wake(PEER)  # the node connected: its mail goes now
    assert len(peer.sent) == 2
    queue.enqueue("a@x.meship", b"2\r\n", "<2@x>", [("b@y.meship", PEER)], 0.0)
    queue.postpone([2], "backing off", 1000.0)  # waits far in the future
    service.wake(PEER)  # again, while the first attempt is in flight
    assert not first.called  # not cancelled
    assert [body for _, _, body in peer.sent] == [b"1\r\n", b"1\r\n", b"2\r\n"]
    first.callback({"b@y.meship": OK})
    assert queue.summary() == []
    service.stopService()


def test_mail_handed_over_as_it_is_queued_is_sent_once_without_reading_the_queue() -> None:
    clock = Clock()
    first: Deferred = Deferred()
    second: Deferred = Deferred()
    peer = FakePeer(first, second)
    service = _service(peer, clock)
    service.startService()
    reads: list[str] = []
    run = service._store.run

    def recording(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(fn.__name__)
        return run(fn, *args, **kwargs)

    service._store.run = recording  # type: ignore[method-assign]
    for n in (1, 2):  # the second beside the first, which is still in flight
        [(destination, message)] = queue.enqueue(
            "a@x.meship", b"%d\r\n" % n, f"<{n}@x>", [("b@y.meship", PEER)], 0
        )
        service.poke(destination, message)
    assert [body for _, _, body in peer.sent] == [b"1\r\n", b"2\r\n"]
    assert "due_messages" not in reads
    first.callback({"b@y.meship": OK})
    second.callback({"b@y.meship": OK})
    assert len(peer.sent) == 2 and queue.summary() == []  # each sent once
    service.stopService()
