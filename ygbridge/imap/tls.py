"""IMAP with STARTTLS under ygbridge's password policy.

Twisted's IMAP4Server, once given a context factory, advertises LOGINDISABLED and refuses LOGIN
on every connection without TLS, loopback included; here :class:`ClientTLS` decides. STARTTLS
is refused inside implicit TLS, and what a client pipelined in clear after it is dropped.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.interfaces import IAddress, IReactorTime

from ygbridge.imap.server import ImapFactory, ImapServer
from ygbridge.tlspolicy import ClientTLS, is_encrypted

PRIVACY_REQUIRED = b"[PRIVACYREQUIRED] Passwords are accepted here only over TLS: use STARTTLS first"


class TLSImapServer(ImapServer):
    """An ImapServer whose password commands follow ``tls``."""

    tls: ClientTLS

    def capabilities(self) -> dict[bytes, Any]:
        caps = super().capabilities()
        if self.state != "unauth":
            caps.pop(b"STARTTLS", None)  # valid only before login (RFC 3501 section 6.2.1)
        if self.tls.password_allowed(self.transport):
            caps.pop(b"LOGINDISABLED", None)
        else:
            caps[b"AUTH"] = []  # listed as no AUTH= at all
            caps.setdefault(b"LOGINDISABLED", None)
        return caps

    def do_LOGIN(self, tag: bytes, user: bytes, passwd: bytes) -> None:
        if self.tls.password_allowed(self.transport):
            super().do_LOGIN(tag, user, passwd)
        else:
            self.sendNegativeResponse(tag, PRIVACY_REQUIRED)

    unauth_LOGIN = (do_LOGIN, *ImapServer.unauth_LOGIN[1:])

    def do_AUTHENTICATE(self, tag: bytes, args: bytes) -> None:
        if self.tls.password_allowed(self.transport):
            super().do_AUTHENTICATE(tag, args)
        else:
            self.sendNegativeResponse(tag, PRIVACY_REQUIRED)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, *ImapServer.unauth_AUTHENTICATE[1:])

    def do_STARTTLS(self, tag: bytes) -> None:
        if self.startedTLS or is_encrypted(self.transport):
            self.sendNegativeResponse(tag, b"TLS is already active")
        elif not self.canStartTLS:
            self.sendNegativeResponse(tag, b"TLS not available")
        else:
            self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
            self.transport.startTLS(self.ctx)
            self.startedTLS = True
            self.clearLineBuffer()  # sent in clear after STARTTLS: never obeyed (RFC 3501 section 6.2.1)

    unauth_STARTTLS = (do_STARTTLS,)


class TLSImapFactory(ImapFactory):
    """Makes :class:`TLSImapServer` connections with the node's certificate."""

    protocol = TLSImapServer

    def __init__(self, portal: Portal, clock: IReactorTime, tls: ClientTLS) -> None:
        super().__init__(portal, clock, tls.context)
        self.tls = tls

    def buildProtocol(self, addr: IAddress) -> ImapServer:
        server = super().buildProtocol(addr)
        assert isinstance(server, TLSImapServer)
        server.tls = self.tls
        return server
