"""Node identity and mail addressing: key -> address -> meshname, and mail address parsing.

Pure functions only; docs/addressing.md explains the derivation and the two domain forms.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

from ygbridge.errors import AddressError

MESH_NETWORK = ipaddress.IPv6Network("200::/7")
NODE_NETWORK = ipaddress.IPv6Network("200::/8")
MESHNAME_SUFFIX = ".meship"
POSTMASTER = "postmaster"


def address_for_key(key: bytes) -> ipaddress.IPv6Address:
    """The 200::/8 node address that yggdrasil derives from an ed25519 public key."""
    if len(key) != 32:
        raise AddressError(f"a yggdrasil key is 32 bytes, not {len(key)}")
    bits = int.from_bytes(bytes(b ^ 0xFF for b in key), "big")
    total = len(key) * 8
    ones = 0
    while ones < total and bits >> (total - 1 - ones) & 1:
        ones += 1
    remaining = total - ones - 1  # drop the ones and the first zero after them
    tail = (bits & ((1 << remaining) - 1)) << (ones + 1) if remaining > 0 else 0
    tail_bytes = tail.to_bytes(len(key), "big")
    return ipaddress.IPv6Address(bytes([0x02, ones]) + tail_bytes[:14])


def meshname(address: ipaddress.IPv6Address) -> str:
    """The meshname label of an address: its 16 bytes in lowercase base32 without padding."""
    return base64.b32encode(address.packed).decode("ascii").rstrip("=").lower()


def address_from_meshname(label: str) -> ipaddress.IPv6Address:
    """Inverse of :func:`meshname`."""
    text = label.upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError as exc:
        raise AddressError(f"{label!r} is not a meshname") from exc
    if len(raw) != 16:
        raise AddressError(f"{label!r} is not a meshname")
    return ipaddress.IPv6Address(raw)


def is_mesh_address(address: ipaddress.IPv6Address) -> bool:
    """True for any 200::/7 address (a node or a host on a node's subnet)."""
    return address in MESH_NETWORK


def is_node_address(address: ipaddress.IPv6Address) -> bool:
    """True for a 02xx: node address, the only kind that identifies a key well enough."""
    return address in NODE_NETWORK


def domain_for(address: ipaddress.IPv6Address) -> str:
    """The hostname form of a node's mail domain."""
    return meshname(address) + MESHNAME_SUFFIX


def literal_for(address: ipaddress.IPv6Address) -> str:
    """The RFC 5321 address-literal form of a node's mail domain."""
    return f"[IPv6:{address.compressed}]"


def parse_domain(domain: str) -> ipaddress.IPv6Address:
    """The 200::/7 address named by a mail domain in either form; AddressError otherwise."""
    text = domain.strip().rstrip(".").lower()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if not inner.startswith("ipv6:"):
            raise AddressError(f"{domain!r} is not an IPv6 address literal")
        try:
            address = ipaddress.IPv6Address(inner[5:])
        except ValueError as exc:
            raise AddressError(f"{domain!r} is not a valid IPv6 address literal") from exc
    elif text.endswith(MESHNAME_SUFFIX):
        address = address_from_meshname(text[: -len(MESHNAME_SUFFIX)])
    else:
        raise AddressError(f"{domain!r} is not a mesh domain (<meshname>.meship or [IPv6:200::/7])")
    if not is_mesh_address(address):
        raise AddressError(f"{address} is outside the Yggdrasil range 200::/7")
    return address


@dataclass(frozen=True)
class MailAddress:
    """A mail address on the mesh: a local part and the 200::/7 address of its domain."""

    local: str
    node: ipaddress.IPv6Address

    @classmethod
    def parse(cls, text: str) -> MailAddress:
        """Parse ``local@domain`` (angle brackets allowed) where domain is a mesh domain."""
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        local, sep, domain = text.rpartition("@")
        if not sep or not local:
            raise AddressError(f"{text!r} is not a mail address (expected local@domain)")
        return cls(local.lower(), parse_domain(domain))

    def __str__(self) -> str:
        return f"{self.local}@{domain_for(self.node)}"

    @property
    def literal(self) -> str:
        """The same mailbox in address-literal form."""
        return f"{self.local}@{literal_for(self.node)}"
