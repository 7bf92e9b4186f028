"""The IMAP server over the Mailstore, driven line by line through a StringTransport."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fakestore import CREATED, ImmediateDB, failure_of, make_user, memory_database, result_of
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail.imap4 import IAccount
from twisted.python.failure import Failure

from ygbridge.imap.mailbox import ImapAccount, ImapRealm
from ygbridge.imap.message import MimeEntity, parse_date_time, split_message
from ygbridge.imap.server import ImapFactory, ImapServer
from ygbridge.mailstore import Mailstore
from ygbridge.store.models import database

NOW = CREATED + 100
#: Mixed-case and repeated header names, 8-bit UTF-8 in a header and the body.
MESSAGE = (
    b"Received: from a\r\n\tby b\r\n"
    b"FROM: Alice <alice@example.meship>\r\n"
    b"subject: Gr\xc3\xbc\xc3\x9fe\r\n"
    b"Received: from c\r\n"
    b"Message-ID: <1@example.meship>\r\n"
    b"\r\n"
    b"Hall\xc3\xb6\r\nline two\r\n"
)


@pytest.fixture(autouse=True)
def db() -> Iterator[None]:
    memory_database()
    make_user("alice")
    yield
    database.close()


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def mailstore(clock: Clock) -> Mailstore:
    return Mailstore(ImmediateDB(), clock)


@pytest.fixture
def factory(mailstore: Mailstore, clock: Clock) -> ImapFactory:
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    checker.addUser(b"alice", b"secret")  # its avatar ids are bytes
    return ImapFactory(Portal(ImapRealm(mailstore), [checker]), clock)


class Client:
    """One IMAP connection: bytes in, the bytes the server wrote out."""

    def __init__(self, factory: ImapFactory) -> None:
        self.server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)
        self.greeting = self.transport.value()

    def send(self, data: bytes) -> bytes:
        self.transport.clear()
        self.server.dataReceived(data)
        return self.transport.value()

    def login(self) -> None:
        assert self.send(b"a LOGIN alice secret\r\n") == b"a OK LOGIN succeeded\r\n"

    def select(self, mailbox: bytes = b"INBOX") -> None:
        self.login()
        assert self.send(b"s SELECT " + mailbox + b"\r\n").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")

    def append(self, message: bytes, mailbox: bytes = b"INBOX", extra: bytes = b"") -> bytes:
        assert self.send(b"p APPEND %b%b {%d}\r\n" % (mailbox, extra, len(message))) == (
            b"+ Ready for %d octets of data\r\n" % len(message)
        )
        return self.send(message + b"\r\n")

    def disconnect(self) -> None:
        self.server.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def client(factory: ImapFactory) -> Client:
    return Client(factory)


def deliver(mailstore: Mailstore, body: bytes = MESSAGE, **kwargs: str) -> int | None:
    return result_of(mailstore.deliver("alice", body, message_id=None, sender_node=None, **kwargs))


# Logging in


def test_greeting_allows_login_without_tls(client: Client) -> None:
    assert (
        client.greeting
        == b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN NAMESPACE IDLE] ygbridge IMAP4rev1 ready\r\n"
    )


def test_login_with_user_name(client: Client) -> None:
    assert client.send(b"a LOGIN alice wrong\r\n") == b"a NO LOGIN failed\r\n"
    assert client.send(b'b LOGIN "alice" "secret"\r\n') == b"b OK LOGIN succeeded\r\n"
    assert isinstance(client.server.account, ImapAccount)


def test_authenticate_plain(client: Client) -> None:
    assert client.send(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    response = base64.b64encode(b"\0alice\0secret")
    assert client.send(response + b"\r\n") == b"a OK Authentication successful\r\n"


def test_realm_gives_accounts_for_str_user_names(mailstore: Mailstore) -> None:
    realm = ImapRealm(mailstore)
    interface, account, logout = result_of(realm.requestAvatar("alice", None, IAccount))
    assert interface is IAccount and isinstance(account, ImapAccount)
    logout()
    logout()  # twice is harmless
    assert failure_of(realm.requestAvatar("bob", None, IAccount)).check(UnauthorizedLogin)
    with pytest.raises(NotImplementedError):
        realm.requestAvatar("alice", None)


# SELECT, LIST, STATUS, CREATE


def test_select_reports_uidnext_and_permanentflags(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.login()
    assert client.send(b"s SELECT inbox\r\n") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 1 EXISTS\r\n"
        b"* 0 RECENT\r\n"
        b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
        b"* OK [UIDNEXT 2] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Limited\r\n"
        b"s OK [READ-WRITE] SELECT completed\r\n"
    )


def test_examine_is_read_only(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore, flags=["$Label"])
    client.login()
    assert client.send(b"e EXAMINE INBOX\r\n") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label)\r\n"
        b"* 1 EXISTS\r\n"
        b"* 0 RECENT\r\n"
        b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
        b"* OK [UIDNEXT 2] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS ()] Limited\r\n"
        b"e OK [READ-ONLY] EXAMINE completed\r\n"
    )
    assert client.send(b"f STORE 1 +FLAGS (\\Seen)\r\n") == b"f NO the mailbox is open read-only\r\n"
    assert client.send(b"g FETCH 1 (FLAGS BODY[TEXT])\r\n") == (
        b"* 1 FETCH (FLAGS ($Label) BODY[TEXT] {18}\r\nHall\xc3\xb6\r\nline two\r\n)\r\n"
        b"g OK FETCH completed\r\n"
    )


def test_select_missing_mailbox(client: Client) -> None:
    client.login()
    assert client.send(b"s SELECT Nope\r\n") == b"s NO No such mailbox\r\n"


def test_pipelined_commands_after_select_keep_order(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.login()
    answer = client.send(b"s SELECT INBOX\r\nf FETCH 1 (UID)\r\nn NOOP\r\n")
    assert answer.endswith(
        b"s OK [READ-WRITE] SELECT completed\r\n"
        b"* 1 FETCH (UID 1)\r\nf OK FETCH completed\r\n"
        b"n OK NOOP completed\r\n"
    )


def test_list_shows_mailbox_attributes_not_message_flags(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore, flags=["\\Seen"])
    client.login()
    assert client.send(b'l LIST "" "*"\r\n') == (
        b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"\r\n'
        b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
        b'* LIST (\\HasNoChildren \\Junk) "/" "Junk"\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"\r\n'
        b"l OK LIST completed\r\n"
    )
    assert client.send(b'd LIST "" ""\r\n') == b'* LIST (\\Noselect) "/" ""\r\nd OK LIST completed\r\n'


def test_create_then_list_and_lsub(client: Client) -> None:
    client.login()
    assert client.send(b"c CREATE Work/2024\r\n") == b"c OK CREATE completed\r\n"
    assert client.send(b"c CREATE work/2024\r\nd CREATE Work\r\n") == (
        b"c OK CREATE completed\r\nd NO mailbox 'Work' already exists\r\n"
    )
    assert client.send(b'l LIST "" W%\r\n') == (
        b'* LIST (\\HasChildren) "/" "Work"\r\nl OK LIST completed\r\n'
    )
    assert client.send(b"u UNSUBSCRIBE Work\r\n") == b"u OK UNSUBSCRIBE completed\r\n"
    assert client.send(b'l LSUB "Work/" %\r\n') == (
        b'* LSUB (\\HasNoChildren) "/" "Work/2024"\r\nl OK LSUB completed\r\n'
    )
    assert client.send(b'l LSUB "" Work\r\n') == b"l OK LSUB completed\r\n"
    assert client.send(b"r RENAME Work Play\r\nx DELETE Play/2024\r\n") == (
        b"r OK RENAME completed\r\nx OK DELETE completed\r\n"
    )
    assert client.send(b"y DELETE INBOX\r\n") == b"y NO INBOX cannot be deleted\r\n"


def test_status(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    deliver(mailstore, flags=["\\Seen"])
    client.login()
    assert client.send(b"t STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)\r\n") == (
        b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1700000000 UNSEEN 1 RECENT 0)\r\n"
        b"t OK STATUS complete\r\n"
    )
    assert client.send(b"t STATUS Nope (MESSAGES)\r\n") == b"t NO Could not open mailbox\r\n"


# FETCH


def test_fetch_header_fields_keeps_raw_bytes_and_does_not_set_seen(
    client: Client, mailstore: Mailstore
) -> None:
    deliver(mailstore)
    client.select()
    fields = b"FROM: Alice <alice@example.meship>\r\nsubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n"
    assert client.send(b"f FETCH 1 (BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT)] {%d}\r\n%b)\r\nf OK FETCH completed\r\n"
        % (len(fields), fields)
    )
    rest = b"Received: from a\r\n\tby b\r\nReceived: from c\r\nMessage-ID: <1@example.meship>\r\n\r\n"
    assert client.send(b"f UID FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)])\r\n") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (FROM SUBJECT)] {%d}\r\n%b UID 1)\r\nf OK FETCH completed\r\n"
        % (len(rest), rest)
    )
    assert client.send(b"f FETCH 1 FLAGS\r\n") == b"* 1 FETCH (FLAGS ())\r\nf OK FETCH completed\r\n"


def test_fetch_header_and_size_are_raw(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.select()
    header, _ = split_message(MESSAGE)
    literal = b"{%d}\r\n%b" % (len(header), header)
    assert client.send(b"f FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER] RFC822.HEADER)\r\n") == (
        b"* 1 FETCH (RFC822.SIZE %d BODY[HEADER] %b RFC822.HEADER %b)\r\nf OK FETCH completed\r\n"
        % (len(MESSAGE), literal, literal)
    )


def test_append_then_fetch_is_byte_identical(client: Client) -> None:
    message = MESSAGE + b"bare\nLF and \x00\xff bytes\r\n"
    client.select()
    assert client.append(message, extra=b' (\\Seen $Work) " 7-Jul-2024 10:00:00 +0200"') == (
        b"* 1 EXISTS\r\np OK APPEND completed\r\n"
    )
    assert client.send(b"f UID FETCH 1 (BODY.PEEK[] FLAGS INTERNALDATE)\r\n") == (
        b"* 1 FETCH (BODY[] {%d}\r\n%b FLAGS ($Work \\Seen) " % (len(message), message)
        + b'INTERNALDATE "07-Jul-2024 08:00:00 +0000" UID 1)\r\nf OK FETCH completed\r\n'
    )


def test_append_elsewhere_and_to_missing_mailbox(client: Client) -> None:
    client.select()
    assert client.append(b"x\r\n", mailbox=b"Sent") == b"p OK APPEND completed\r\n"
    assert client.append(b"x\r\n", mailbox=b"Nope") == b"p NO [TRYCREATE] there is no mailbox 'Nope'\r\n"
    assert client.send(b'p APPEND Sent "bad date" {1}\r\n') == b"+ Ready for 1 octets of data\r\n"
    assert client.send(b"x\r\n") == b"p BAD Illegal syntax: not an IMAP date-time: b'bad date'\r\n"


def test_fetch_body_sets_seen_and_reports_flags(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.select()
    literal = b"{%d}\r\n%b" % (len(MESSAGE), MESSAGE)
    assert client.send(b"f FETCH 1 (BODY[])\r\n") == (
        b"* 1 FETCH (BODY[] %b FLAGS (\\Seen))\r\nf OK FETCH completed\r\n" % literal
    )
    assert (
        client.send(b"f FETCH 1 (BODY[])\r\n")
        == b"* 1 FETCH (BODY[] %b)\r\nf OK FETCH completed\r\n" % literal
    )


def test_fetch_many_in_batches(client: Client, mailstore: Mailstore) -> None:
    for n in range(250):
        deliver(mailstore, b"Subject: %d\r\n\r\nx\r\n" % n)
    client.select()
    answer = client.send(b"f FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])\r\nn NOOP\r\n")
    assert answer.count(b" FLAGS (\\Seen))\r\n") == 250
    assert (
        b"* 250 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: 249\r\n\r\n FLAGS (\\Seen))" in answer
    )
    assert answer.endswith(b"f OK FETCH completed\r\nn OK NOOP completed\r\n")


def test_fetch_parts_and_partial(client: Client, mailstore: Mailstore) -> None:
    multipart = (
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFirst \xc3\xa9\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
        b"--b1--\r\n"
    )
    deliver(mailstore, multipart)
    client.select()
    assert client.send(b"f FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<2.5> BODY.PEEK[3])\r\n") == (
        b"* 1 FETCH (BODY[1] {8}\r\nFirst \xc3\xa9 "
        b"BODY[2.MIME] {77}\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n "
        b"BODY[]<2> {5}\r\nntent BODY[3] NIL)\r\n"
        b"f OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 1 (BODYSTRUCTURE)\r\n") == (
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 8 1 NIL NIL NIL NIL) '
        b'("application" "octet-stream" NIL NIL NIL "base64" 4 NIL NIL NIL NIL) '
        b'"mixed" ("boundary" "b1") NIL NIL NIL))\r\n'
        b"f OK FETCH completed\r\n"
    )


def test_fetch_envelope_keeps_8bit(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.select()
    assert client.send(b"f FETCH 1 ENVELOPE\r\n") == (
        b'* 1 FETCH (ENVELOPE (NIL "Gr\xc3\xbc\xc3\x9fe" (("Alice" NIL "alice" "example.meship")) '
        b'(("Alice" NIL "alice" "example.meship")) (("Alice" NIL "alice" "example.meship")) '
        b'NIL NIL NIL NIL "<1@example.meship>"))\r\n'
        b"f OK FETCH completed\r\n"
    )


def test_uid_fetch_past_the_end_returns_the_last_message(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore), deliver(mailstore)
    client.select()
    assert (
        client.send(b"f UID FETCH 5:* (FLAGS)\r\n")
        == b"* 2 FETCH (FLAGS () UID 2)\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"f FETCH 3 (FLAGS)\r\n") == b"f OK FETCH completed\r\n"


@pytest.mark.parametrize(
    ("command", "found"),
    [
        (b"SEARCH ALL", b"1 2"),
        (b"UID SEARCH UNSEEN", b"1"),
        (b"UID SEARCH SEEN", b"7"),
        (b"SEARCH SEEN", b"2"),
        (b"SEARCH FROM bob", b"2"),
        (b'SEARCH SUBJECT "hello THERE"', b"1"),
        (b"SEARCH HEADER X-Chat yes", b"2"),
        (b"SEARCH OR SEEN SUBJECT hello", b"1 2"),
        (b"SEARCH NOT (SEEN FROM bob)", b"1"),
        (b"SEARCH SENTON 14-Nov-2023", b"1"),
        (b"SEARCH SINCE 14-Nov-2023", b"1 2"),
        (b"SEARCH BEFORE 14-Nov-2023", b""),
        (b"SEARCH BODY second", b"2"),
        (b"SEARCH TEXT x-chat", b"2"),
        (b"SEARCH KEYWORD $Chat", b"2"),
        (b"SEARCH LARGER 80", b"1"),
        (b"SEARCH 2:* UNDELETED", b"2"),
        (b"UID SEARCH UID 7:*", b"7"),
        (b"SEARCH UID 7", b"2"),
        (b"SEARCH CHARSET UTF-8 NEW", b""),
    ],
)
def test_search(client: Client, mailstore: Mailstore, command: bytes, found: bytes) -> None:
    date = b"Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n"
    deliver(mailstore, b"From: Alice <a@x>\r\nSubject: Hello there\r\n" + date + b"\r\nbody one\r\n")
    for _ in range(5):  # UIDs 2 to 6 come and go, so UIDs and sequence numbers differ
        deliver(mailstore)
    client.select()
    client.send(b"s STORE 2:* +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    deliver(
        mailstore,
        b"From: Bob <b@x>\r\nSubject: other\r\nX-Chat: yes\r\n\r\nsecond body\r\n",
        flags=["\\Seen", "$Chat"],
    )
    client.send(b"n NOOP\r\n")
    response = b" ".join([b"* SEARCH", *found.split()])
    assert client.send(b"s " + command + b"\r\n") == response + b"\r\ns OK SEARCH completed\r\n"


def test_search_syntax_errors(client: Client) -> None:
    client.select()
    assert client.send(b"s SEARCH BOGUS\r\n") == b"s BAD Illegal syntax: bad SEARCH key b'BOGUS'\r\n"
    assert (
        client.send(b"s SEARCH SINCE yesterday\r\n")
        == b"s BAD Illegal syntax: bad SEARCH date b'yesterday'\r\n"
    )
    assert client.send(b"s SEARCH FROM\r\n") == b"s BAD Illegal syntax: SEARCH FROM wants an argument\r\n"


# STORE, EXPUNGE, COPY


def test_store_flags(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore), deliver(mailstore)
    client.select()
    assert client.send(b"s STORE 1:2 +FLAGS (\\Seen \\flagged)\r\n") == (
        b"* 1 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
        b"* 2 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
        b"s OK STORE completed\r\n"
    )
    assert client.send(b"s UID STORE 2 -FLAGS (\\Flagged)\r\n") == (
        b"* 2 FETCH (FLAGS (\\Seen) UID 2)\r\ns OK STORE completed\r\n"
    )
    assert client.send(b"s STORE 1 FLAGS.SILENT ($Done)\r\n") == b"s OK STORE completed\r\n"
    assert client.send(b"f FETCH 1:* FLAGS\r\n") == (
        b"* 1 FETCH (FLAGS ($Done))\r\n* 2 FETCH (FLAGS (\\Seen))\r\nf OK FETCH completed\r\n"
    )
    assert client.send(b"s STORE 1 XFLAGS (\\Seen)\r\n").startswith(b"s BAD Illegal syntax")


def test_expunge_sequence_numbers(client: Client, mailstore: Mailstore) -> None:
    for _ in range(5):
        deliver(mailstore)
    client.select()
    client.send(b"s STORE 2,3,5 +FLAGS.SILENT (\\Deleted)\r\n")
    assert (
        client.send(b"e EXPUNGE\r\n")
        == b"* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    )
    assert client.send(b"f FETCH 1:* (UID)\r\n") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 4)\r\nf OK FETCH completed\r\n"
    )


def test_copy(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore, flags=["\\Seen"])
    client.select()
    assert client.send(b"c COPY 1 Trash\r\n") == b"c OK COPY completed\r\n"
    assert client.send(b"c UID COPY 1 Nope\r\n") == b"c NO [TRYCREATE] there is no mailbox 'Nope'\r\n"
    assert client.send(b"t STATUS Trash (MESSAGES UNSEEN)\r\n").startswith(
        b"* STATUS Trash (MESSAGES 1 UNSEEN 0)"
    )


# Other sessions: IDLE, pushes, connection loss


def test_idle_gets_exists_when_mail_is_delivered(client: Client, mailstore: Mailstore) -> None:
    deliver(mailstore)
    client.select()
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n"
    client.transport.clear()
    assert deliver(mailstore) == 2
    assert client.transport.value() == b"* 2 EXISTS\r\n"
    assert client.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"
    assert client.send(b"f FETCH 2 (UID)\r\n") == b"* 2 FETCH (UID 2)\r\nf OK FETCH completed\r\n"


def test_idle_wants_done(client: Client) -> None:
    client.select()
    client.send(b"i IDLE\r\n")
    assert client.send(b"x NOOP\r\n") == b"i BAD Expected DONE; IDLE terminated\r\n"


def test_lost_connection_is_no_longer_notified(
    client: Client, factory: ImapFactory, mailstore: Mailstore
) -> None:
    client.select()
    client.send(b"i IDLE\r\n")
    box = mailstore._users["alice"].mailboxes["INBOX"]
    assert len(box.watchers) == 1
    client.disconnect()
    client.transport.clear()
    deliver(mailstore)
    assert client.transport.value() == b""
    assert box.watchers == set()
    assert "alice" not in mailstore._users  # the last session let go of the live state


def test_other_sessions_see_flags_and_expunges(factory: ImapFactory) -> None:
    first, second = Client(factory), Client(factory)
    first.select()
    first.append(b"one\r\n")
    first.append(b"two\r\n")
    second.select()
    second.transport.clear()
    assert first.send(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n") == b"s OK STORE completed\r\n"
    assert second.transport.value() == b"* 1 FETCH (FLAGS (\\Deleted))\r\n"
    assert first.send(b"e EXPUNGE\r\n") == b"* 1 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    # EXPUNGE is not sent outside a command: the second session hears of it at NOOP.
    assert second.send(b"f FETCH 2 (UID)\r\n") == b"* 2 FETCH (UID 2)\r\nf OK FETCH completed\r\n"
    assert second.send(b"n NOOP\r\n") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    assert second.send(b"i IDLE\r\n") == b"+ idling\r\n"
    first.send(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    second.transport.clear()
    first.send(b"e EXPUNGE\r\n")
    assert second.transport.value() == b"* 1 EXPUNGE\r\n"  # while idling, at once


def test_idle_timeout_uses_the_injected_clock(client: Client, clock: Clock, mailstore: Mailstore) -> None:
    client.select()
    client.transport.clear()
    clock.advance(ImapServer.POSTAUTH_TIMEOUT)
    assert client.transport.value() == b"* BYE Autologout; connection idle too long\r\n"
    assert client.transport.disconnecting
    assert mailstore._users["alice"].mailboxes["INBOX"].watchers == set()


# Message parsing


def test_split_message_and_parts() -> None:
    assert split_message(b"A: b\n\nbody") == (b"A: b\n\n", b"body")
    assert split_message(b"\r\nbody") == (b"\r\n", b"body")
    assert split_message(b"A: b\r\n") == (b"A: b\r\n", b"")
    entity = MimeEntity(
        b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x\r\n\r\ntwo"
    )
    assert [part.body for part in entity.children] == [b"one", b"two"]  # no close delimiter
    assert entity.getHeaders(False, "CONTENT-TYPE") == {"content-type": "multipart/alternative; boundary=x"}


def test_parse_date_time() -> None:
    assert parse_date_time(b" 1-Jan-2024 01:00:00 +0100") == 1704067200
    with pytest.raises(ValueError):
        parse_date_time(b"1-Foo-2024 01:00:00 +0100")
