"""The outbound SMTP client, driven through StringTransport."""

import ipaddress

import pytest
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ygbridge.notify import NO_REQUEST, DsnRequest, Notify
from ygbridge.outcome import describe_failure
from ygbridge.smtp.client import PIPELINED_BODY, SMTPClient, SMTPClientProtocol, dot_stuffed, one_chunk


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


def test_one_bdat_chunk_carries_the_body_as_it_is_in_pieces() -> None:
    body = b".dot\r\n" * 100 + b"no line end"
    pieces = list(one_chunk(body, chunk=64))
    assert pieces[0].startswith(b"BDAT %d LAST\r\n.dot" % len(body)) and len(pieces) == 10
    assert b"".join(pieces) == b"BDAT %d LAST\r\n" % len(body) + body
    assert list(one_chunk(b"")) == [b"BDAT 0 LAST\r\n"]


DEST = ipaddress.IPv6Address("200::1")
BODY = b"Subject: hi\r\n\r\nbody\r\n"


class TCPTransport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled


class Peer:
    """The client's connections to DEST, each over a StringTransport, accepted as they are dialled."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.client = SMTPClient(self.reactor, self.reactor, "me.meship", timeout=30, idle=10)
        self.connections: list[tuple[SMTPClientProtocol, StringTransport]] = []

    def send(
        self,
        recipients: list[str],
        dsn: DsnRequest = NO_REQUEST,
        body: bytes = BODY,
        sender: str = "a@x.meship",
    ) -> Deferred:
        result = Deferred.fromCoroutine(self.client.send(DEST, sender, recipients, body, dsn))
        self.accept()
        return result

    def accept(self) -> None:
        """Accept the connections the client dialled."""
        while len(self.reactor.tcpClients) > len(self.connections):
            factory = self.reactor.tcpClients[len(self.connections)][2]
            wrapper = factory.buildProtocol(None)
            transport = TCPTransport()
            wrapper.makeConnection(transport)
            self.connections.append((wrapper._wrappedProtocol, transport))

    def answer(self, *replies: bytes, connection: int = -1) -> None:
        """Feed replies; DATA is pulled from the client's producer as a draining socket would."""
        protocol, transport = self.connections[connection]
        for reply in replies:
            protocol.dataReceived(reply)
            while transport.producer is not None:
                transport.producer.resumeProducing()

    def sent(self, connection: int = -1) -> bytes:
        return self.connections[connection][1].value()


def _session(
    recipients: list[str], dsn: DsnRequest = NO_REQUEST
) -> tuple[Deferred, SMTPClientProtocol, StringTransport, Clock]:
    peer = Peer()
    result = peer.send(recipients, dsn)
    protocol, transport = peer.connections[0]
    return result, protocol, transport, peer.reactor


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
    assert sent.endswith(b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n")  # kept open for the next
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


PIPELINING_EHLO = b"250-y\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100\r\n"


def test_pipelining_sends_the_envelope_and_data_in_one_write() -> None:
    peer = Peer()
    result = peer.send(["b@y.meship", "c@y.meship"])
    peer.answer(b"220 hi\r\n")
    peer.connections[0][1].clear()
    peer.answer(PIPELINING_EHLO)
    assert peer.sent() == (
        b"MAIL FROM:<a@x.meship> SIZE=21 BODY=8BITMIME\r\nRCPT TO:<b@y.meship>\r\n"
        b"RCPT TO:<c@y.meship>\r\nDATA\r\n"
    )
    peer.answer(b"250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n250 2.0.0 stored\r\n")
    outcome = result.result
    assert outcome["b@y.meship"].permanent and outcome["c@y.meship"].code == 250


CHUNKING_EHLO = b"250-y\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"


def test_a_small_body_goes_as_one_bdat_chunk_in_the_envelopes_write() -> None:
    peer = Peer()
    body = b"Subject: hi\r\n\r\n.leading dot, no final line end"
    result = peer.send(["b@y.meship", "c@y.meship"], body=body)
    peer.answer(b"220 hi\r\n")
    peer.connections[0][1].clear()
    peer.answer(CHUNKING_EHLO)
    assert peer.sent() == (  # RFC 3030 section 4.2: one write, one round trip
        b"MAIL FROM:<a@x.meship> SIZE=%d BODY=8BITMIME\r\nRCPT TO:<b@y.meship>\r\n"
        b"RCPT TO:<c@y.meship>\r\nBDAT %d LAST\r\n" % (len(body), len(body)) + body
    )
    peer.connections[0][1].clear()
    peer.answer(b"250 ok\r\n550 5.1.1 no such user\r\n")
    assert not result.called and peer.sent() == b""
    peer.answer(b"250 ok\r\n250 2.0.0 stored\r\n")
    assert result.result["b@y.meship"].permanent and result.result["c@y.meship"].code == 250
    second = peer.send(["d@y.meship"])
    assert peer.sent().startswith(b"MAIL FROM:")  # ended cleanly: no RSET
    peer.answer(b"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 No valid recipients\r\n")
    assert second.result["d@y.meship"].code == 550  # the refusal of its RCPT, not of the BDAT
    peer.connections[0][1].clear()
    peer.send(["e@y.meship"])
    assert peer.sent().startswith(b"RSET\r\nMAIL FROM:")  # a refused BDAT: reset first


def test_a_refused_sender_is_every_recipients_result_and_the_chunk_is_not_counted() -> None:
    peer = Peer()
    result = peer.send(["b@y.meship", "c@y.meship"])
    peer.answer(b"220 hi\r\n", CHUNKING_EHLO)
    assert peer.sent().endswith(b"BDAT %d LAST\r\n" % len(BODY) + BODY)
    peer.answer(b"451 4.7.0 quota\r\n503 5.5.1 MAIL first\r\n503 5.5.1 MAIL first\r\n")
    assert not result.called  # the BDAT's reply is still to come: read before the next command
    peer.answer(b"503 5.5.1 MAIL FROM first\r\n")
    assert [reply.code for reply in result.result.values()] == [451, 451]
    peer.connections[0][1].clear()
    second = peer.send(["b@y.meship"])
    assert peer.sent().startswith(b"RSET\r\nMAIL FROM:")
    peer.answer(b"250 reset\r\n250 ok\r\n250 ok\r\n250 2.0.0 stored\r\n")
    assert second.result["b@y.meship"].code == 250


def test_a_large_body_waits_for_an_accepted_recipient() -> None:
    peer = Peer()
    body = b"Subject: big\r\n\r\n" + b"x" * PIPELINED_BODY
    result = peer.send(["b@y.meship"], body=body)
    peer.answer(b"220 hi\r\n")
    peer.connections[0][1].clear()
    peer.answer(CHUNKING_EHLO)
    assert peer.sent().endswith(b"RCPT TO:<b@y.meship>\r\n")  # no DATA, no BDAT yet
    peer.connections[0][1].clear()
    peer.answer(b"250 ok\r\n250 ok\r\n")
    assert peer.sent() == b"BDAT %d LAST\r\n" % len(body) + body
    peer.answer(b"250 2.0.0 stored\r\n")
    assert result.result["b@y.meship"].code == 250
    peer.connections[0][1].clear()
    second = peer.send(["c@y.meship"], body=body)
    assert peer.sent().startswith(b"MAIL FROM:")  # ended cleanly: no RSET
    peer.answer(b"250 ok\r\n550 5.1.1 no\r\n")
    assert b"BDAT" not in peer.sent() and second.result["c@y.meship"].permanent
    peer.connections[0][1].clear()
    peer.send(["d@y.meship"])
    assert peer.sent().startswith(b"RSET\r\nMAIL FROM:")  # nothing was sent: reset first


def test_chunking_without_pipelining_sends_the_body_after_the_replies() -> None:
    peer = Peer()
    result = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", b"250-y\r\n250 CHUNKING\r\n", b"250 ok\r\n")
    assert peer.sent().endswith(b"RCPT TO:<b@y.meship>\r\n")
    peer.answer(b"250 ok\r\n")
    assert peer.sent().endswith(b"BDAT %d LAST\r\n" % len(BODY) + BODY)
    peer.answer(b"250 2.0.0 stored\r\n")
    assert result.result["b@y.meship"].code == 250


def test_a_connection_carries_transactions_and_quits_when_idle() -> None:
    peer = Peer()
    first = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert first.result["b@y.meship"].ok
    assert peer.client.idle_connections(DEST) == 1
    peer.connections[0][1].clear()
    second = peer.send(["c@y.meship"])
    assert len(peer.connections) == 1  # the same connection, no new greeting or EHLO
    assert peer.sent().startswith(b"MAIL FROM:<a@x.meship>")
    peer.answer(b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert second.result["c@y.meship"].ok
    peer.reactor.advance(9)
    assert not peer.connections[0][1].disconnecting
    peer.reactor.advance(2)
    assert peer.sent().endswith(b"QUIT\r\n") and peer.connections[0][1].disconnecting
    assert peer.client.idle_connections() == 0


def test_a_transaction_that_ended_early_is_reset_before_the_next() -> None:
    peer = Peer()
    first = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n550 5.1.1 no\r\n554 no valid recipients\r\n")
    assert first.result["b@y.meship"].permanent
    peer.connections[0][1].clear()
    second = peer.send(["c@y.meship"])
    assert peer.sent().startswith(b"RSET\r\nMAIL FROM:<a@x.meship>")
    peer.answer(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert second.result["c@y.meship"].code == 250


def test_without_pipelining_commands_wait_for_replies_and_refused_mail_sends_no_rcpt() -> None:
    peer = Peer()
    result = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", b"250 y\r\n")
    assert peer.sent().endswith(b"MAIL FROM:<a@x.meship>\r\n")
    peer.answer(b"451 4.3.0 later\r\n")
    assert b"RCPT" not in peer.sent() and b"DATA" not in peer.sent()
    assert result.result["b@y.meship"].code == 451


def test_a_cached_connection_closed_by_the_node_is_replaced() -> None:
    peer = Peer()
    first = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert first.result["b@y.meship"].ok
    second = peer.send(["c@y.meship"])
    peer.connections[0][0].connectionLost(Failure(error.ConnectionDone()))  # closed before MAIL's reply
    peer.accept()  # the fresh connection the client dialled
    assert len(peer.connections) == 2
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n", connection=1)
    assert second.result["c@y.meship"].ok


def test_a_cached_connection_the_node_closes_with_421_is_replaced() -> None:
    peer = Peer()
    first = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert first.result["b@y.meship"].ok
    second = peer.send(["c@y.meship"])
    peer.answer(b"421 4.4.2 idle too long\r\n")
    peer.accept()
    assert len(peer.connections) == 2 and peer.connections[0][1].disconnecting
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert second.result["c@y.meship"].ok


def test_a_lost_fresh_connection_fails_the_attempt() -> None:
    peer = Peer()
    result = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO)
    peer.connections[0][0].connectionLost(Failure(error.ConnectionDone()))
    failures: list[Failure] = []
    result.addErrback(failures.append)
    assert failures and failures[0].check(error.ConnectionLost)


UTF8_HEADERS = "Subject: Grüße\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    ("sender", "recipient", "body", "status"),
    [
        ("a@x.meship", "b@y.meship", UTF8_HEADERS, "5.6.9"),
        ("jörg@x.meship", "b@y.meship", BODY, "5.6.7"),
        ("a@x.meship", "bücher@y.meship", BODY, "5.6.7"),
    ],
)
def test_an_internationalised_message_is_refused_for_a_node_without_smtputf8(
    sender: str, recipient: str, body: bytes, status: str
) -> None:
    peer = Peer()
    result = peer.send([recipient], body=body, sender=sender)
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO)
    reply = result.result[recipient]
    assert reply.permanent and reply.text.startswith(status) and "SMTPUTF8" in reply.text
    assert b"MAIL" not in peer.sent()


def test_an_internationalised_message_asks_for_smtputf8_when_advertised() -> None:
    peer = Peer()
    result = peer.send(["bücher@y.meship"], body=UTF8_HEADERS)
    peer.answer(b"220 hi\r\n", b"250-y\r\n250-PIPELINING\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n")
    sent = peer.sent()
    assert b"MAIL FROM:<a@x.meship> SIZE=26 BODY=8BITMIME SMTPUTF8\r\n" in sent
    assert "RCPT TO:<bücher@y.meship>\r\n".encode() in sent
    peer.answer(b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert result.result["bücher@y.meship"].ok


def test_an_ascii_message_does_not_ask_for_smtputf8() -> None:
    peer = Peer()
    peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", b"250-y\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n")
    assert b"SMTPUTF8" not in peer.sent()


def test_forget_closes_the_connections_kept_for_a_node() -> None:
    peer = Peer()
    first = peer.send(["b@y.meship"])
    peer.answer(b"220 hi\r\n", PIPELINING_EHLO, b"250 ok\r\n250 ok\r\n354 go\r\n250 stored\r\n")
    assert first.result["b@y.meship"].ok and peer.client.idle_connections(DEST) == 1
    peer.client.forget(DEST)
    assert peer.client.idle_connections() == 0 and peer.connections[0][1].disconnecting
    peer.send(["c@y.meship"])
    assert len(peer.connections) == 2  # the next message dials afresh
