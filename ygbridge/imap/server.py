"""The IMAP server: twisted.mail's IMAP4Server made into what ygbridge's clients need.

Commands live in account_commands (authenticated state) and selected_commands (selected
state) over the machinery of base; this module adds the session-wide parts: capabilities,
LOGIN, IDLE (RFC 2177), ID (RFC 2971), ENABLE (RFC 5161), NOOP, and the timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.mail.imap4 import IAccount, IMAP4Server, PLAINCredentials

from ygbridge.imap.account_commands import AccountCommands
from ygbridge.imap.base import CommandServer
from ygbridge.imap.selected_commands import SelectedCommands
from ygbridge.nodelay import send_at_once

#: Capabilities beyond Twisted's IMAP4rev1, AUTH=, NAMESPACE and IDLE.
EXTENSIONS = (b"LITERAL+", b"ID", b"ENABLE", b"UNSELECT", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"CHILDREN")


class ImapServer(AccountCommands, SelectedCommands):
    """One IMAP connection; ``clock`` drives its timeouts.

    A connection that has not logged in is closed after ``timeOut`` seconds without a command;
    after login, including during IDLE, after ``POSTAUTH_TIMEOUT`` (RFC 2177 asks clients to
    renew IDLE every 29 minutes).
    """

    IDENT = b"ygbridge IMAP4rev1 ready"
    timeOut = 60
    POSTAUTH_TIMEOUT = 30 * 60

    def __init__(self, clock: IReactorTime, contextFactory: Any = None) -> None:
        super().__init__(chal={b"PLAIN": PLAINCredentials}, contextFactory=contextFactory)
        self._clock = clock
        self._idle_tag: bytes | None = None

    def connectionMade(self) -> None:
        send_at_once(self.transport)
        super().connectionMade()

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        return self._clock.callLater(period, func)  # TimeoutMixin would use the global reactor

    def timeoutConnection(self) -> None:
        self.sendLine(b"* BYE Autologout; connection idle too long")
        self.transport.loseConnection()  # connectionLost lets go of the mailbox

    def capabilities(self) -> dict[bytes, Any]:
        return {**super().capabilities(), **dict.fromkeys(EXTENSIONS)}

    # LOGIN, answered before the next command is read

    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> None:
        if b"LOGINDISABLED" in self.capabilities():
            self.sendBadResponse(tag, b"LOGIN is disabled before STARTTLS")
            return
        self._run(tag, self._login(user, password))

    unauth_LOGIN = (do_LOGIN, CommandServer.arg_astring, IMAP4Server.arg_finalastring)

    async def _login(self, user: bytes, password: bytes) -> bytes:
        interface, avatar, logout = await maybeDeferred(self.authenticateLogin, user, password)
        assert interface is IAccount
        if self._gone:
            logout()
            return b""
        self.account, self._onLogout, self.state = avatar, logout, "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        return b"[CAPABILITY %b] LOGIN succeeded" % b" ".join(self.listCapabilities())

    # IDLE: changes to the selected mailbox are reported as they happen

    def do_IDLE(self, tag: bytes) -> None:
        self.sendContinuationRequest(b"idling")
        self._idle_tag = tag
        self.parseState = "idle"
        self._report_updates()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line: bytes) -> None:
        self.parseState = "command"
        tag, self._idle_tag = self._idle_tag, None
        if line.strip().upper() == b"DONE":
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(tag, b"Expected DONE; IDLE terminated")

    # ID, ENABLE, NOOP

    def do_ID(self, tag: bytes, parameters: bytes) -> None:
        """Say who we are; what the client says of itself is not needed."""
        self.sendUntaggedResponse(b'ID ("name" "ygbridge")')
        self.sendPositiveResponse(tag, b"ID completed")

    unauth_ID = auth_ID = select_ID = (do_ID, IMAP4Server.arg_line)

    def do_ENABLE(self, tag: bytes, extensions: bytes) -> None:
        """None of the extensions ygbridge has needs enabling, so none is enabled."""
        self.sendUntaggedResponse(b"ENABLED")
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = select_ENABLE = (do_ENABLE, IMAP4Server.arg_line)

    def do_NOOP(self, tag: bytes) -> None:
        self.sendPositiveResponse(tag, b"NOOP completed")  # after the changes not reported yet

    unauth_NOOP = auth_NOOP = select_NOOP = logout_NOOP = (do_NOOP,)


class ImapFactory(ServerFactory):
    """Makes ``protocol`` connections that log in through ``portal`` (ImapRealm avatars).

    ``contextFactory`` (a TLS context factory) makes STARTTLS available.
    """

    protocol = ImapServer

    def __init__(self, portal: Portal, clock: IReactorTime, contextFactory: Any = None) -> None:
        self.portal = portal
        self.clock = clock
        self.contextFactory = contextFactory

    def buildProtocol(self, addr: IAddress) -> ImapServer:
        server = self.protocol(self.clock, contextFactory=self.contextFactory)
        server.portal = self.portal
        server.factory = self
        return server
