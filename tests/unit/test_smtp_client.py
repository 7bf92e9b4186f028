"""The outbound SMTP client, driven through StringTransport."""

import ipaddress

import pytest
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ygbridge.notify import NO_REQUEST, DsnRequest, Notify
from ygbridge.smtp.client import SMTPClient, SMTPClientProtocol, describe_failure, dot_stuffed


def test_dot_stuffing_and_terminator() -> None:
    assert b"".join(dot_stuffed(b"a\r\n.b\r\n..\r\n")) == b"a\r\n..b\r\n...\r\n.\r\n"
    assert b"".join(dot_stuffed(b"no newline at end")) == b"no newline at end\r\n.\r\n"
    assert b"".join(dot_stuffed(b"")) == b".\r\n"


def test_dot_stuffing_in_pieces_that_end_lines() -> None:
    body = b"".join(b".line %d\r\n" % i for i in range(1000))
    pieces = list(dot_stuffed(body, chunk=100))
    assert len(pieces) > 50 and all(piece.endswith(b"\r\n") for piece in pieces)
    assert pieces[-1].endswith(b"\r\n.\r\n") and len(pieces[-1]) > 3  # the end travels with data
    assert b"".join(pieces) == b"".join(b"..line %d\r\n" % i for i in range(1000)) + b".\r\n"


def _session(
    recipients: list[str], dsn: DsnRequest = NO_REQUEST
) -> tuple[Deferred, SMTPClientProtocol, StringTransport, Clock]:
    clock = Clock()
    client = SMTPClient(None, clock, "me.meship", timeout=30)  # type: ignore[arg-type]
    protocol = SMTPClientProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    result = Deferred.fromCoroutine(
        client._transaction(protocol, "a@x.meship", recipients, b"Subject: hi\r\n\r\nbody\r\n", dsn)
    )
    return result, protocol, transport, clock


def _answer(protocol: SMTPClientProtocol, transport: StringTransport, *replies: bytes) -> None:
    """Feed replies; DATA is pulled from the client's producer as a draining socket would."""
    for reply in replies:
        protocol.dataReceived(reply)
        while transport.producer is not None:
            transport.producer.resumeProducing()


def test_per_recipient_results() -> None:
    result, protocol, transport, _ = _session(["b@y.meship", "c@y.meship"])
    _answer(
        protocol,
        transport,
        b"220 hi\r\n",
        b"250-y\r\n250-8BITMIME\r\n250 SIZE 100\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"550 5.1.1 no such user\r\n",
        b"354 go\r\n",
        b"250 2.0.0 stored\r\n",
    )
    sent = transport.value()
    assert b"MAIL FROM:<a@x.meship> SIZE=21 BODY=8BITMIME\r\n" in sent
    assert sent.endswith(b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    outcome = result.result
    assert outcome["b@y.meship"].ok and outcome["b@y.meship"].code == 250
    assert outcome["c@y.meship"].permanent and "no such user" in outcome["c@y.meship"].text


def test_temporary_failure_at_end_of_data_keeps_message() -> None:
    result, protocol, transport, _ = _session(["b@y.meship"])
    _answer(
        protocol,
        transport,
        b"220 hi\r\n",
        b"250 y\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"354 go\r\n",
        b"451 4.3.0 try later\r\n",
    )
    reply = result.result["b@y.meship"]
    assert not reply.ok and not reply.permanent


def test_silent_server_times_out() -> None:
    result, protocol, transport, clock = _session(["b@y.meship"])
    _answer(protocol, transport, b"220 hi\r\n")
    clock.advance(31)
    failures = []
    result.addErrback(failures.append)
    assert failures and "Timeout" in failures[0].type.__name__


def test_connection_lost_fails_waiting_command() -> None:
    result, protocol, transport, _ = _session(["b@y.meship"])
    protocol.connectionLost()
    failures = []
    result.addErrback(failures.append)
    assert failures


def test_connection_lost_during_data_fails_the_attempt() -> None:
    result, protocol, transport, _ = _session(["b@y.meship"])
    for reply in (b"220 hi\r\n", b"250 y\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
        protocol.dataReceived(reply)
    assert transport.producer is not None  # DATA is being pulled
    transport.producer.stopProducing()  # what the transport does when the connection drops
    failures = []
    result.addErrback(failures.append)
    assert failures and "DATA" in str(failures[0].value)


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (defer.TimeoutError(), "no answer from 200::1 in time"),
        (error.TimeoutError(), "no answer from 200::1 in time"),
        (
            error.ConnectionRefusedError(),
            "200::1 refused the connection: no mail service listens on its port",
        ),
        (error.NoRouteError(), "no route to node 200::1"),
        (OSError(113, "No route to host"), "no route to node 200::1"),
        (error.ConnectionLost(), "the connection to 200::1 was lost during the transaction"),
        (error.ConnectError(string="boom"), "cannot connect to 200::1: boom."),
        (ValueError(), "delivery to 200::1 failed"),
    ],
)
def test_failures_are_described_without_class_names(failure: BaseException, text: str) -> None:
    assert describe_failure(failure, ipaddress.IPv6Address("200::1")) == text


REQUEST = DsnRequest(
    ret="HDRS",
    envid="id 1+",
    recipients={"b@y.meship": Notify(frozenset({"SUCCESS", "FAILURE"}), "rfc822;b@[IPv6:200::1]")},
)


@pytest.mark.parametrize("advertised", [True, False])
def test_dsn_request_goes_to_a_next_hop_that_advertises_dsn(advertised: bool) -> None:
    result, protocol, transport, _ = _session(["b@y.meship", "c@y.meship"], REQUEST)
    ehlo = b"250-y\r\n250-DSN\r\n250 8BITMIME\r\n" if advertised else b"250-y\r\n250 8BITMIME\r\n"
    _answer(
        protocol, transport, b"220 hi\r\n", ehlo, b"250 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"
    )
    sent = transport.value()
    if advertised:
        assert b"MAIL FROM:<a@x.meship> SIZE=21 BODY=8BITMIME RET=HDRS ENVID=id+201+2B\r\n" in sent
        assert b"RCPT TO:<b@y.meship> NOTIFY=FAILURE,SUCCESS ORCPT=rfc822;b@[IPv6:200::1]\r\n" in sent
        assert b"RCPT TO:<c@y.meship>\r\n" in sent  # nothing asked for c
    else:
        assert b"NOTIFY" not in sent and b"RET=" not in sent and b"ENVID" not in sent
