"""The IMAP server's session and mailbox commands, line by line through a StringTransport."""

from __future__ import annotations

import base64

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.testing import StringTransport

from ygbridge.imap.mailbox import IImapAccount, ImapAccount, ImapRealm
from ygbridge.limits import Limits
from ygbridge.testing.deferreds import failure_of, result_of
from ygbridge.testing.imap import MAX_MESSAGE_SIZE, MESSAGE, Client, ImapLab, first_client, running_lab
from ygbridge.testing.store import alice_database

lab = pytest.fixture(running_lab, name="lab")
client = pytest.fixture(first_client, name="client")

DEFAULTS = Limits()
LOGIN_WITHIN = int(DEFAULTS.imap_login_within)

CAPABILITIES = (
    b"IMAP4rev1 AUTH=PLAIN NAMESPACE IDLE LITERAL+ ID ENABLE UNSELECT UIDPLUS MOVE SPECIAL-USE CHILDREN"
    b" APPENDLIMIT=%d" % MAX_MESSAGE_SIZE
)


# Logging in, capabilities, timeouts


def test_greeting_lists_capabilities(client: Client) -> None:
    assert client.greeting == b"* OK [CAPABILITY %b] ygbridge IMAP4rev1 ready\r\n" % CAPABILITIES
    assert client.send(b"c CAPABILITY\r\n") == (
        b"* CAPABILITY %b\r\nc OK CAPABILITY completed\r\n" % CAPABILITIES
    )


def test_login_with_user_name(client: Client, lab: ImapLab) -> None:
    assert client.send(b"a LOGIN alice wrong\r\n") == b""  # the LoginGate answers a failure later
    lab.clock.advance(DEFAULTS.login_delay_max)
    assert client.received() == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert client.send(b'b LOGIN "alice" "secret"\r\n') == (
        b"b OK [CAPABILITY %b] LOGIN succeeded\r\n" % CAPABILITIES
    )
    assert isinstance(client.server.account, ImapAccount)


def test_login_with_literals(client: Client) -> None:
    assert client.send(b"a LOGIN {5}\r\n") == b"+ Ready for 5 octets of text\r\n"
    assert client.send(b"alice {6+}\r\nsecret\r\n").startswith(b"a OK [CAPABILITY")


def test_authenticate_plain(client: Client) -> None:
    assert client.send(b"a AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    response = base64.b64encode(b"\0alice\0secret")
    assert (
        client.send(response + b"\r\n") == b"a OK [CAPABILITY %b] AUTHENTICATE completed\r\n" % CAPABILITIES
    )


def test_logout_lets_go_of_the_account(client: Client, lab: ImapLab) -> None:
    client.select()
    assert client.send(b"l LOGOUT\r\n") == b"* BYE Nice talking to you\r\nl OK LOGOUT successful\r\n"
    assert client.transport.disconnecting
    client.disconnect()
    assert lab.mailhub._users == {}


def test_commands_pipelined_after_login_wait_for_it(client: Client) -> None:
    answer = client.send(b"a LOGIN alice secret\r\nb SELECT INBOX\r\nc NOOP\r\n")
    assert answer.startswith(b"a OK [CAPABILITY")
    assert answer.endswith(b"b OK [READ-WRITE] SELECT completed\r\nc OK NOOP completed\r\n")


def test_realm_gives_accounts_for_the_checkers_avatar_ids(lab: ImapLab) -> None:
    realm = ImapRealm(lab.mailhub)
    interface, account, logout = result_of(realm.requestAvatar(b"alice", None, IImapAccount))
    assert interface is IImapAccount and isinstance(account, ImapAccount)
    logout()
    logout()  # twice is harmless
    assert failure_of(realm.requestAvatar(b"bob", None, IImapAccount)).check(UnauthorizedLogin)
    with pytest.raises(NotImplementedError):
        realm.requestAvatar(b"alice", None)
    with pytest.raises(NotImplementedError):
        realm.requestAvatar((), None, IImapAccount)  # an anonymous avatar id


def test_unauthenticated_connection_closed_after_a_minute(client: Client, lab: ImapLab) -> None:
    lab.clock.advance(59)
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"  # any command restarts the wait
    lab.clock.advance(59)
    assert not client.transport.disconnecting
    lab.clock.advance(1)
    assert client.received() == b"* BYE Autologout; connection idle too long\r\n"
    assert client.transport.disconnecting


def test_noop_cannot_keep_a_connection_without_login_forever(client: Client, lab: ImapLab) -> None:
    for _ in range(LOGIN_WITHIN // 50 - 1):
        lab.clock.advance(50)
        assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"
    lab.clock.advance(LOGIN_WITHIN % 50 + 49)
    assert not client.transport.disconnecting
    lab.clock.advance(1)
    assert client.received() == b"* BYE Autologout; no login in time\r\n"
    assert client.transport.disconnecting


def test_imap_timeouts_are_limits(store_backend: str) -> None:
    """``[limits] imap_unauth_idle``, ``imap_login_within`` and ``imap_idle`` set the three waits."""
    limits = Limits(imap_unauth_idle=10.0, imap_login_within=25.0, imap_idle=40.0)
    for _ in alice_database(store_backend):
        lab = ImapLab(limits)
        idle = Client(lab.factory)
        lab.clock.advance(9)
        assert not idle.transport.disconnecting
        lab.clock.advance(1)
        assert idle.received() == b"* BYE Autologout; connection idle too long\r\n"
        busy = Client(lab.factory)
        for _ in range(3):
            lab.clock.advance(8)
            assert busy.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"
        lab.clock.advance(1)
        assert busy.received() == b"* BYE Autologout; no login in time\r\n"
        user = Client(lab.factory)
        user.login()
        lab.clock.advance(39)
        assert not user.transport.disconnecting
        lab.clock.advance(1)
        assert user.received() == b"* BYE Autologout; connection idle too long\r\n"


def test_a_login_lifts_the_login_deadline(client: Client, lab: ImapLab) -> None:
    client.login()
    lab.clock.advance(LOGIN_WITHIN - 1)
    assert client.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"
    lab.clock.advance(2)
    assert not client.transport.disconnecting
    assert client.received() == b""


def test_idle_lasts_29_minutes_then_the_session_ends(client: Client, lab: ImapLab) -> None:
    client.select()
    assert client.send(b"i IDLE\r\n") == b"+ idling\r\n"
    lab.clock.advance(29 * 60)
    assert lab.deliver() == 1
    assert client.received() == b"* 1 EXISTS\r\n* 1 RECENT\r\n"
    assert not client.transport.disconnecting
    lab.clock.advance(DEFAULTS.imap_idle - 29 * 60)
    assert client.received() == b"* BYE Autologout; connection idle too long\r\n"
    assert client.transport.disconnecting
    client.disconnect()
    assert lab.mailhub._users == {}  # the mailbox and the account were let go


def test_id_enable_namespace(client: Client) -> None:
    assert client.send(b'i ID ("name" "test" "version" "1")\r\n') == (
        b'* ID ("name" "ygbridge")\r\ni OK ID completed\r\n'
    )
    client.login()
    assert client.send(b"e ENABLE CONDSTORE UTF8=ACCEPT\r\n") == b"* ENABLED\r\ne OK ENABLE completed\r\n"
    assert (
        client.send(b"n NAMESPACE\r\n") == b'* NAMESPACE (("" "/")) NIL NIL\r\nn OK NAMESPACE completed\r\n'
    )


# SELECT, EXAMINE, CLOSE, UNSELECT


def test_select_reports_uidnext_unseen_and_permanentflags(client: Client, lab: ImapLab) -> None:
    lab.deliver(flags=["\\Seen"])
    lab.deliver(flags=["$Label"])
    client.login()
    assert client.send(b"s SELECT inbox\r\n") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label)\r\n"
        b"* 2 EXISTS\r\n"
        b"* 2 RECENT\r\n"  # the first session to select the mailbox gets them as \\Recent
        b"* OK [UNSEEN 2] First unseen\r\n"
        b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
        b"* OK [UIDNEXT 3] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label \\*)] Limited\r\n"
        b"s OK [READ-WRITE] SELECT completed\r\n"
    )


def test_examine_is_read_only(client: Client, lab: ImapLab) -> None:
    lab.deliver(flags=["\\Seen", "\\Deleted"])
    client.login()
    assert client.send(b"e EXAMINE INBOX\r\n") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 1 EXISTS\r\n"
        b"* 1 RECENT\r\n"  # recent, but EXAMINE does not claim it
        b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
        b"* OK [UIDNEXT 2] Predicted next UID\r\n"
        b"* OK [PERMANENTFLAGS ()] Limited\r\n"
        b"e OK [READ-ONLY] EXAMINE completed\r\n"
    )
    assert client.send(b"f STORE 1 +FLAGS (\\Seen)\r\n") == b"f NO the mailbox is open read-only\r\n"
    assert client.send(b"x EXPUNGE\r\n") == b"x NO the mailbox is open read-only\r\n"
    assert client.send(b"m MOVE 1 Trash\r\n") == b"m NO the mailbox is open read-only\r\n"
    assert client.send(b"g FETCH 1 (FLAGS BODY[TEXT])\r\n") == (
        b"* 1 FETCH (FLAGS (\\Deleted \\Seen) BODY[TEXT] {18}\r\nHall\xc3\xb6\r\nline two\r\n)\r\n"
        b"g OK FETCH completed\r\n"
    )
    assert client.send(b"c CLOSE\r\n") == b"c OK CLOSE completed\r\n"  # nothing expunged
    assert client.send(b"t STATUS INBOX (MESSAGES)\r\n").startswith(b'* STATUS "INBOX" (MESSAGES 1)')


def test_select_missing_mailbox_leaves_the_selected_state(client: Client) -> None:
    client.select()
    assert client.send(b"s SELECT Nope\r\n") == b"s NO there is no mailbox 'Nope'\r\n"
    assert client.send(b"f FETCH 1 FLAGS\r\n") == b"f BAD FETCH needs a selected mailbox\r\n"


def test_close_expunges_silently_and_unselect_does_not(client: Client, lab: ImapLab) -> None:
    for _ in range(3):
        lab.deliver(flags=["\\Deleted"])
    client.select()
    assert client.send(b"u UNSELECT\r\n") == b"u OK UNSELECT completed\r\n"
    assert client.send(b"s SELECT INBOX\r\n").startswith(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 3 EXISTS"
    )
    assert client.send(b"c CHECK\r\n") == b"c OK CHECK completed\r\n"
    assert client.send(b"c CLOSE\r\n") == b"c OK CLOSE completed\r\n"
    assert client.send(b"c STATUS INBOX (MESSAGES)\r\n").startswith(b'* STATUS "INBOX" (MESSAGES 0)')
    assert client.send(b"f FETCH 1 FLAGS\r\n") == b"f BAD FETCH needs a selected mailbox\r\n"


def test_pipelined_commands_after_select_keep_order(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    client.login()
    answer = client.send(b"s SELECT INBOX\r\nf FETCH 1 (UID)\r\nn NOOP\r\n")
    assert answer.endswith(
        b"s OK [READ-WRITE] SELECT completed\r\n"
        b"* 1 FETCH (UID 1)\r\nf OK FETCH completed\r\n"
        b"n OK NOOP completed\r\n"
    )


# LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, APPEND


def test_list_shows_special_use_and_children(client: Client, lab: ImapLab) -> None:
    lab.deliver(flags=["\\Seen"])
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
    assert client.send(b'l LIST "" {2+}\r\nS*\r\n') == (
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\nl OK LIST completed\r\n'
    )


def test_create_rename_delete_subscribe(client: Client) -> None:
    client.login()
    assert client.send(b"c CREATE Work/2024\r\n") == b"c OK CREATE completed\r\n"
    assert client.send(b"c CREATE work/2024\r\nd CREATE Work\r\n") == (
        b"c OK CREATE completed\r\nd NO mailbox 'Work' already exists\r\n"
    )
    assert client.send(b'l LIST "" W%\r\n') == b'* LIST (\\HasChildren) "/" "Work"\r\nl OK LIST completed\r\n'
    # CREATE subscribes nothing (RFC 3501 6.3.3, 6.3.6): that is the client's choice
    assert client.send(b'l LSUB "" Work*\r\n') == b"l OK LSUB completed\r\n"
    assert client.send(b"u SUBSCRIBE Work/2024\r\n") == b"u OK SUBSCRIBE completed\r\n"
    assert client.send(b'l LSUB "Work/" %\r\n') == (
        b'* LSUB (\\HasNoChildren) "/" "Work/2024"\r\nl OK LSUB completed\r\n'
    )
    assert client.send(b"u UNSUBSCRIBE Work\r\n") == b"u OK UNSUBSCRIBE completed\r\n"
    assert client.send(b'l LSUB "" Work\r\n') == b"l OK LSUB completed\r\n"
    assert client.send(b's SUBSCRIBE Work\r\nl LSUB "" Work\r\n') == (
        b's OK SUBSCRIBE completed\r\n* LSUB (\\HasChildren) "/" "Work"\r\nl OK LSUB completed\r\n'
    )
    assert client.send(b"r RENAME Work Play\r\nx DELETE Play/2024\r\n") == (
        b"r OK RENAME completed\r\nx OK DELETE completed\r\n"
    )
    assert (
        client.send(b'l LIST "" P*\r\n') == b'* LIST (\\HasNoChildren) "/" "Play"\r\nl OK LIST completed\r\n'
    )
    assert client.send(b"y DELETE INBOX\r\n") == b"y NO INBOX cannot be deleted\r\n"
    assert client.send(b"y RENAME INBOX Old\r\n") == b"y NO INBOX cannot be renamed\r\n"
    assert client.send(b"y DELETE Nope\r\n") == b"y NO there is no mailbox 'Nope'\r\n"
    assert client.send(b'c CREATE "Caf&AOk-"\r\nl LIST "" Caf*\r\n') == (
        b'c OK CREATE completed\r\n* LIST (\\HasNoChildren) "/" "Caf&AOk-"\r\nl OK LIST completed\r\n'
    )


def test_status(client: Client, lab: ImapLab) -> None:
    lab.deliver()
    lab.deliver(flags=["\\Seen"])
    client.login()
    assert client.send(b"t STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)\r\n") == (
        b'* STATUS "INBOX" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1700000000 UNSEEN 1 RECENT 2)\r\n'
        b"t OK STATUS completed\r\n"
    )
    assert client.send(b't CREATE "My Box"\r\nt STATUS "My Box" (messages)\r\n') == (
        b't OK CREATE completed\r\n* STATUS "My Box" (MESSAGES 0)\r\nt OK STATUS completed\r\n'
    )
    assert client.send(b"t STATUS Nope (MESSAGES)\r\n") == b"t NO there is no mailbox 'Nope'\r\n"
    assert client.send(b"t STATUS INBOX (BOGUS)\r\n") == (
        b"t BAD STATUS items are MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN\r\n"
    )


def test_append_answers_appenduid_and_is_byte_identical(client: Client) -> None:
    message = MESSAGE + b"bare\nLF and \x00\xff bytes\r\n"
    client.select()
    assert client.append(message, extra=b' (\\Seen $Work) " 7-Jul-2024 10:00:00 +0200"') == (
        b"* 1 EXISTS\r\n* 1 RECENT\r\np OK [APPENDUID 1700000000 1] APPEND completed\r\n"
    )
    assert client.send(b"f UID FETCH 1 (BODY.PEEK[] FLAGS INTERNALDATE RFC822.SIZE)\r\n") == (
        b"* 1 FETCH (BODY[] {%d}\r\n%b FLAGS ($Work \\Recent \\Seen) " % (len(message), message)
        + b'INTERNALDATE "07-Jul-2024 08:00:00 +0000" RFC822.SIZE %d UID 1)\r\n' % len(message)
        + b"f OK FETCH completed\r\n"
    )


def test_append_without_date_takes_arrival_time(client: Client, lab: ImapLab) -> None:
    client.login()
    assert client.append(b"x\r\n", mailbox=b"Sent") == b"p OK [APPENDUID 1700000000 1] APPEND completed\r\n"
    client.send(b"s SELECT Sent\r\n")
    assert client.send(b"f FETCH 1 INTERNALDATE\r\n") == (
        b'* 1 FETCH (INTERNALDATE "14-Nov-2023 22:15:00 +0000")\r\nf OK FETCH completed\r\n'
    )


def test_append_with_literal_plus_and_errors(client: Client) -> None:
    client.login()
    assert (
        client.send(b"p APPEND Sent {3+}\r\nx\r\n\r\n")
        == b"p OK [APPENDUID 1700000000 1] APPEND completed\r\n"
    )
    assert (
        client.send(b"p APPEND Nope {3+}\r\nx\r\n\r\n") == b"p NO [TRYCREATE] there is no mailbox 'Nope'\r\n"
    )
    assert client.send(b'p APPEND Sent "bad date" {1+}\r\nx\r\n') == (
        b'p BAD malformed date-time, e.g. "05-Mar-2024 10:30:00 +0100"\r\n'
    )
    assert client.send(b"p APPEND Sent {x}\r\n") == b"p BAD malformed literal\r\n"


def test_malformed_arguments_get_a_tagged_bad(client: Client) -> None:
    client.select()
    assert client.send(b"t STATUS INBOX ((MESSAGES))\r\n").startswith(b"t BAD ")
    assert client.send(b"s STORE 1 +FLAGS (\xff)\r\n") == b"s BAD flag (an ASCII atom) expected\r\n"
    assert client.send(b"p APPEND INBOX (\xff) {1+}\r\nx\r\n") == (b"p BAD flag (an ASCII atom) expected\r\n")
    assert client.send(b"x FROB\r\n") == b"x BAD unknown command FROB\r\n"


def test_a_failing_command_still_gets_its_tagged_answer(
    client: Client, lab: ImapLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.select()

    def broken() -> None:
        raise RuntimeError("disk on fire")

    assert client.server.mbox is not None
    monkeypatch.setattr(client.server.mbox, "close", broken)
    assert client.send(b"u UNSELECT\r\nn NOOP\r\n") == (
        b"u BAD Server error, please try again later\r\nn OK NOOP completed\r\n"
    )


class _WriteLog(StringTransport):
    """A StringTransport that also keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


def test_status_and_select_from_memory_answer_as_the_store_does_in_one_write(lab: ImapLab) -> None:
    lab.deliver()
    lab.deliver(flags=["\\Seen"])
    transport = _WriteLog()
    client = Client(lab.factory, transport)
    client.login()
    assert client.server.account is not None
    inbox = client.server.account.mailbox("INBOX")
    client.send(b"s SELECT INBOX\r\n")  # claims the \Recent messages: what was read is stale
    commands = (b"t STATUS INBOX (MESSAGES UNSEEN RECENT)\r\n", b"s SELECT INBOX\r\n")
    from_store = [client.send(command) for command in commands]
    account = client.server.account.mailboxes
    assert inbox.counts is not None and lab.mailhub.known_contents(account, inbox, claim=True) is not None
    for command, answer in zip(commands, from_store, strict=True):
        transport.writes.clear()
        assert client.send(command) == answer
        assert len(transport.writes) == 1
