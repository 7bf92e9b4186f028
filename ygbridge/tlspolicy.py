"""When a client port takes a password: over TLS, from loopback, or where the operator allows it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IOpenSSLServerConnectionCreator, ISSLTransport, ITransport


def is_encrypted(transport: ITransport) -> bool:
    """True once the connection runs over TLS (implicit, or after STARTTLS)."""
    return ISSLTransport.providedBy(transport)


def is_loopback(peer: IAddress) -> bool:
    """True for a peer on this machine's loopback (127/8, ::1, ::ffff:127.x) or a UNIX socket."""
    if isinstance(peer, UNIXAddress):
        return True
    if not isinstance(peer, (IPv4Address, IPv6Address)):
        return False
    address = ipaddress.ip_address(peer.host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class ClientTLS:
    """The TLS context of the client ports and the plaintext-password policy they share."""

    context: IOpenSSLServerConnectionCreator
    allow_plaintext: bool = False

    def password_allowed(self, transport: ITransport) -> bool:
        """May a client send its password over ``transport`` now?"""
        return self.allow_plaintext or is_encrypted(transport) or is_loopback(transport.getPeer())
