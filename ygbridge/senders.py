"""The visible sender of a message (``From:`` and ``Sender:``) and who may show it (docs/mesh.md).

The mailboxes are read from the raw header bytes: fields unfolded, then parsed as RFC 5322
address lists (display names, quoted strings, comments, groups, obsolete routes). Encoded
words are decoded in display names only, after the structure is known, so an encoded ``<`` or
``@`` can never turn into an address. A field that cannot be parsed cleanly counts as a
mismatch, since a mail client may read it differently from us.

Decisions (no RFC mandates them):
- a message must have exactly one ``From:`` field and at most one ``Sender:`` field;
- every mailbox in ``From:`` and ``Sender:`` must be allowed (an RFC 6854 group counts by its
  members; an empty group alone shows no sender and is refused);
- a display name that spells out a mesh address (``"bob@<node>.meship" <carol@...>``) must
  name an allowed one too, since clients often show only the display name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from email import errors as email_errors
from email.headerregistry import Address, HeaderRegistry

from ygbridge.addressing import MailAddress, domain_for, parse_domain
from ygbridge.errors import AddressError, SenderMismatch
from ygbridge.message import field_value, header_fields, header_section

_REGISTRY = HeaderRegistry()
#: Defects that leave the parsed addresses unambiguous.
_HARMLESS = (email_errors.ObsoleteHeaderDefect, email_errors.NonASCIILocalPartDefect)
_SPELLED_ADDRESS = re.compile(r"[^\s<>\"'(),;:@\[\]]+@(\[[^\]\s]*\]|[A-Za-z0-9.-]+)")

#: Whether a mailbox (local part, node of its domain or None) may be shown as the sender.
Allowed = Callable[[str, ipaddress.IPv6Address | None], bool]


def visible_mailboxes(body: bytes) -> list[tuple[str, Address]]:
    """(field name, mailbox) for every mailbox of the ``From:`` and ``Sender:`` fields.

    Raises SenderMismatch when the fields are missing, repeated or cannot be parsed cleanly.
    """
    fields: dict[bytes, list[bytes]] = {b"from": [], b"sender": []}
    for name, field in header_fields(header_section(body)):
        if name in fields:
            fields[name].append(field)
    if len(fields[b"from"]) != 1:
        count = len(fields[b"from"])
        raise SenderMismatch(
            "the message has no From: field" if count == 0 else f"the message has {count} From: fields"
        )
    if len(fields[b"sender"]) > 1:
        raise SenderMismatch(f"the message has {len(fields[b'sender'])} Sender: fields")
    found: list[tuple[str, Address]] = []
    for name, title in ((b"from", "From"), (b"sender", "Sender")):
        for field in fields[name]:
            found.extend((title, address) for address in _parse(title, field))
    if not found:
        raise SenderMismatch("the From: field names no mailbox")
    return found


def _parse(title: str, field: bytes) -> list[Address]:
    value = field_value(field).decode("utf-8", "replace")
    try:
        header = _REGISTRY(title, value)
    except Exception as exc:  # the stdlib parser fails in assorted ways: AttributeError on `g:;a@b`
        raise SenderMismatch(f"the {title}: field cannot be read ({exc})") from None
    if any(not isinstance(defect, _HARMLESS) for defect in header.defects):
        raise SenderMismatch(f"the {title}: field cannot be read unambiguously: {_printable(value)}")
    # typeshed types the registry's headers as BaseHeader; From: and Sender: are AddressHeaders.
    addresses = list(header.addresses)  # type: ignore[attr-defined]
    if any(not address.domain or not address.username for address in addresses):
        raise SenderMismatch(f"the {title}: field has an incomplete address: {_printable(value)}")
    return addresses


def _printable(text: str, limit: int = 200) -> str:
    """``text`` safe for an SMTP reply: printable ASCII, bounded."""
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return safe if len(safe) <= limit else safe[:limit] + "..."


def _spelled(display_name: str) -> list[tuple[str, ipaddress.IPv6Address]]:
    """Mesh addresses written out in a display name: (as written, node address)."""
    found = []
    for match in _SPELLED_ADDRESS.finditer(display_name):
        try:
            found.append((match.group(0), parse_domain(match.group(1))))
        except AddressError:
            continue  # not a mesh domain: nobody on the mesh is impersonated
    return found


def _check(body: bytes, allowed: Allowed, whom: str) -> None:
    for title, mailbox in visible_mailboxes(body):
        try:
            node: ipaddress.IPv6Address | None = parse_domain(mailbox.domain)
        except AddressError:
            node = None
        if not allowed(mailbox.username, node):
            raise SenderMismatch(f"{title}: {_printable(mailbox.addr_spec)} is not {whom}")
        for written, spelled_node in _spelled(mailbox.display_name):
            local = written.rpartition("@")[0]
            if not allowed(local, spelled_node):
                raise SenderMismatch(
                    f"{title}: the display name shows {_printable(written)}, which is not {whom}"
                )


def check_node_sender(body: bytes, source: ipaddress.IPv6Address) -> None:
    """On the mesh: every visible sender must be in the domain of ``source``, the sending node."""
    _check(
        body,
        lambda _local, node: node == source,
        f"in the sending node's domain {domain_for(source)}",
    )


def check_own_sender(body: bytes, own: MailAddress) -> None:
    """On submission: every visible sender must be the user's own address (either form)."""
    _check(
        body,
        lambda local, node: node == own.node and local.lower() == own.local,
        f"your address {own} (or {own.literal})",
    )
