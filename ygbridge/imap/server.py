"""The IMAP server: the session-wide commands, and the factory the node listens with.

Commands live in account_commands (authenticated state) and selected_commands (selected
state) over the wire layer of imap.protocol; this module adds CAPABILITY, NOOP, LOGOUT, LOGIN
and AUTHENTICATE PLAIN (both through the node's LoginGate), IDLE (RFC 2177), ID (RFC 2971)
and ENABLE (RFC 5161).
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from ygbridge.errors import BadCommand
from ygbridge.imap.account_commands import AccountCommands
from ygbridge.imap.mailbox import IImapAccount, ImapAccount
from ygbridge.imap.protocol import ANY, LOGGED_IN, command
from ygbridge.imap.selected_commands import SelectedCommands
from ygbridge.imap.wire import Parser
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.nodelay import send_at_once

#: Capabilities after IMAP4rev1 and the AUTH= ones; APPENDLIMIT= (RFC 7889) follows them.
EXTENSIONS = (
    b"NAMESPACE",
    b"IDLE",
    b"LITERAL+",
    b"ID",
    b"ENABLE",
    b"UNSELECT",
    b"UIDPLUS",
    b"MOVE",
    b"SPECIAL-USE",
    b"CHILDREN",
)
PRIVACY_REQUIRED = b"[PRIVACYREQUIRED] Passwords are accepted here only over TLS: use STARTTLS first"
#: Most ID parameters a client may send (RFC 2971 section 3.3).
_MAX_ID_FIELDS = 30


class ImapServer(AccountCommands, SelectedCommands):
    """One IMAP connection; logs in through ``logins`` and ``portal`` (ImapRealm avatars)."""

    def __init__(
        self, clock: IReactorTime, limits: Limits, max_message_size: int, portal: Portal, logins: LoginGate
    ) -> None:
        super().__init__(clock, limits, max_message_size)
        self.portal = portal
        self.logins = logins
        self._idle_tag = b""

    def connectionMade(self) -> None:
        send_at_once(self.transport)
        super().connectionMade()

    def password_allowed(self) -> bool:
        """Whether LOGIN and AUTHENTICATE may be used now (see imap.tls)."""
        return True

    def capabilities(self) -> list[bytes]:
        """IMAP4rev1, AUTH=PLAIN where a password may be sent, the extensions and APPENDLIMIT."""
        auth = [b"AUTH=PLAIN"] if self.password_allowed() else []
        return [b"IMAP4rev1", *auth, *EXTENSIONS, b"APPENDLIMIT=%d" % self.max_message_size]

    @command(*ANY)
    def do_CAPABILITY(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.untagged(b"CAPABILITY " + b" ".join(self.capabilities()))
        self.tagged(tag, b"OK", b"CAPABILITY completed")

    @command(*ANY)
    def do_NOOP(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.tagged(tag, b"OK", b"NOOP completed")  # after the changes not reported yet

    @command(*ANY)
    def do_LOGOUT(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.untagged(b"BYE Nice talking to you")
        self.tagged(tag, b"OK", b"LOGOUT successful")
        self.state = "logout"
        self.close_connection()

    # Logging in

    @command("unauth")
    def do_LOGIN(self, tag: bytes, args: Parser) -> None:
        user = args.astring("user name")
        args.sp()
        password = args.astring("password")
        args.end()
        if not self.password_allowed():
            self.tagged(tag, b"NO", PRIVACY_REQUIRED)
            return
        self.run(tag, self._login(user, password, b"LOGIN succeeded"))

    @command("unauth")
    def do_AUTHENTICATE(self, tag: bytes, args: Parser) -> None:
        mechanism = args.atom("mechanism").upper()
        initial = None
        if args.skip(b" "):
            initial = args.atom("initial response")  # RFC 4959
        args.end()
        if mechanism != b"PLAIN":
            self.tagged(tag, b"NO", b"Unsupported authentication mechanism (PLAIN is)")
        elif not self.password_allowed():
            self.tagged(tag, b"NO", PRIVACY_REQUIRED)
        elif initial is not None:
            self._plain(tag, initial)
        else:
            self.continuation(b"")
            self.read_line(lambda line: self._plain(tag, line))

    def _plain(self, tag: bytes, response: bytes) -> None:
        """The client's PLAIN response (RFC 4616): ``authzid NUL authcid NUL password``, base64."""
        self.read_line(None)
        if response == b"*":
            self.tagged(tag, b"BAD", b"Authentication cancelled")
            return
        try:
            authzid, user, password = b64decode(response, validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            self.tagged(tag, b"BAD", b"Malformed PLAIN response")
            return
        if authzid and authzid != user:
            self.tagged(tag, b"NO", b"[AUTHORIZATIONFAILED] Cannot act as another user")
            return
        self.run(tag, self._login(user, password, b"AUTHENTICATE completed"))

    async def _login(self, user: bytes, password: bytes, done: bytes) -> bytes:
        peer = self.transport.getPeer()
        source = peer.host if isinstance(peer, (IPv4Address, IPv6Address)) else str(peer)
        credentials = UsernamePassword(user, password)
        interface, account, logout = await self.logins.login(self.portal, source, credentials, IImapAccount)
        assert interface is IImapAccount and isinstance(account, ImapAccount)
        if self._gone:
            logout()
            return b""
        self.account, self._logout = account, logout
        self.logged_in()
        return b"[CAPABILITY %b] %b" % (b" ".join(self.capabilities()), done)

    # IDLE: changes to the selected mailbox are reported as they happen

    @command(*LOGGED_IN)
    def do_IDLE(self, tag: bytes, args: Parser) -> None:
        args.end()
        self.continuation(b"idling")
        self._idle_tag, self.idling = tag, True
        self.read_line(self._idle_line)
        self._report_updates()

    def _idle_line(self, line: bytes) -> None:
        self.read_line(None)
        self.idling = False
        if line.strip().upper() == b"DONE":
            self.tagged(self._idle_tag, b"OK", b"IDLE terminated")
        else:
            self.tagged(self._idle_tag, b"BAD", b"Expected DONE; IDLE terminated")

    # ID, ENABLE

    @command(*ANY)
    def do_ID(self, tag: bytes, args: Parser) -> None:
        """Say who we are; what the client says of itself is read, and not needed."""
        if not args.skip(b"NIL"):
            fields = args.parenthesised(lambda: args.nstring("ID field"), "ID fields")
            if len(fields) % 2 or len(fields) > 2 * _MAX_ID_FIELDS:
                raise BadCommand("ID wants at most 30 field and value pairs")
        args.end()
        self.untagged(b'ID ("name" "ygbridge")')
        self.tagged(tag, b"OK", b"ID completed")

    @command(*LOGGED_IN)
    def do_ENABLE(self, tag: bytes, args: Parser) -> None:
        """None of the extensions ygbridge has needs enabling, so none is enabled."""
        args.atom("capability")
        while args.skip(b" "):
            args.atom("capability")
        args.end()
        self.untagged(b"ENABLED")
        self.tagged(tag, b"OK", b"ENABLE completed")


class ImapFactory(ServerFactory):
    """Makes ``protocol`` connections that log in through ``portal`` (ImapRealm avatars).

    ``logins`` is the node's LoginGate (one of its own if not given).
    """

    protocol: type[ImapServer] = ImapServer

    def __init__(
        self,
        portal: Portal,
        clock: IReactorTime,
        *,
        limits: Limits,
        max_message_size: int,
        logins: LoginGate | None = None,
    ) -> None:
        self.portal = portal
        self.clock = clock
        self.limits = limits
        self.max_message_size = max_message_size
        self.logins = logins if logins is not None else LoginGate(clock, limits)

    def buildProtocol(self, addr: IAddress | None) -> ImapServer:
        server = self.protocol(self.clock, self.limits, self.max_message_size, self.portal, self.logins)
        server.factory = self
        return server
