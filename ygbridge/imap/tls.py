"""IMAP with STARTTLS under ygbridge's password policy (ygbridge.tlspolicy).

Before TLS, off loopback and unless the operator allows plaintext, LOGINDISABLED is advertised
and LOGIN and AUTHENTICATE answer ``NO [PRIVACYREQUIRED]``. STARTTLS is offered only before
login and outside implicit TLS; what a client pipelined in clear after it is dropped.
"""

from __future__ import annotations

from twisted.cred.portal import Portal
from twisted.internet.interfaces import IAddress, IReactorTime

from ygbridge.imap.protocol import command
from ygbridge.imap.server import ImapFactory, ImapServer
from ygbridge.imap.wire import Parser
from ygbridge.limits import Limits
from ygbridge.logins import LoginGate
from ygbridge.tlspolicy import ClientTLS, is_encrypted


class TLSImapServer(ImapServer):
    """An ImapServer that offers STARTTLS and whose password commands follow ``tls``."""

    tls: ClientTLS

    def password_allowed(self) -> bool:
        """Whether this connection may send a password (encrypted, or plaintext allowed from its source)."""
        return self.tls.password_allowed(self.transport)

    def capabilities(self) -> list[bytes]:
        """The plain ones, with STARTTLS before login and LOGINDISABLED where no password may be sent."""
        capabilities = super().capabilities()
        extra = []
        if self.state == "unauth" and not is_encrypted(self.transport):
            extra.append(b"STARTTLS")  # valid only before login (RFC 3501 section 6.2.1)
        if not self.password_allowed():
            extra.append(b"LOGINDISABLED")
        return capabilities[:1] + extra + capabilities[1:]

    @command("unauth")
    def do_STARTTLS(self, tag: bytes, args: Parser) -> None:
        args.end()
        if is_encrypted(self.transport):
            self.tagged(tag, b"NO", b"TLS is already active")
            return
        self.tagged(tag, b"OK", b"Begin TLS negotiation now")
        self.flush()  # in clear, before TLS starts
        self.transport.startTLS(self.tls.context)
        self.drop_input()  # sent in clear after STARTTLS: never obeyed (RFC 3501 section 6.2.1)


class TLSImapFactory(ImapFactory):
    """Makes :class:`TLSImapServer` connections with the node's certificate."""

    protocol = TLSImapServer

    def __init__(
        self,
        portal: Portal,
        clock: IReactorTime,
        tls: ClientTLS,
        *,
        limits: Limits,
        max_message_size: int,
        logins: LoginGate | None = None,
    ) -> None:
        super().__init__(portal, clock, limits=limits, max_message_size=max_message_size, logins=logins)
        self.tls = tls

    def buildProtocol(self, addr: IAddress | None) -> ImapServer:
        server = super().buildProtocol(addr)
        assert isinstance(server, TLSImapServer)
        server.tls = self.tls
        return server
