"""Trace header fields (RFC 5321 section 4.4) that a node prepends to the messages it handles.

They name node domains, node addresses and the authenticated user only: never a LAN client's
IP address or host name (its EHLO name is not recorded either). Pure functions; ``now`` is given.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from email.utils import format_datetime

from ygbridge.addressing import MailAddress, domain_for, literal_for

#: The comment after this node's name in a ``by`` clause.
SOFTWARE = "ygbridge"


def _date(now: float) -> str:
    return format_datetime(datetime.fromtimestamp(now, UTC))


def _with(smtputf8: bool, tls: bool, authenticated: bool) -> str:
    """The ``with`` protocol: ESMTP, or UTF8SMTP when SMTPUTF8 was used (RFC 6531 section 3.7.3);
    "S" when the session ran over TLS (RFC 3848; STARTTLS or implicit TLS, RFC 8314 section 4.3),
    "A" when the client authenticated (RFC 3848)."""
    return ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "") + ("A" if authenticated else "")


def received_submission(user: MailAddress, now: float, smtputf8: bool = False, tls: bool = False) -> bytes:
    """The ``Received:`` line for a message submitted by ``user`` (authenticated) on its own node;
    ``tls``: over TLS.

    The ``from`` clause names the user's node, not the client: the LAN stays private.
    """
    domain = domain_for(user.node)
    return (
        f"Received: from {domain} (authenticated user {user.local})\r\n"
        f"\tby {domain} ({SOFTWARE}) with {_with(smtputf8, tls, authenticated=True)};\r\n"
        f"\t{_date(now)}\r\n"
    ).encode()


def received_mesh(
    source: ipaddress.IPv6Address, node: ipaddress.IPv6Address, now: float, smtputf8: bool = False
) -> bytes:
    """The ``Received:`` line for a message that node ``source`` delivered to ``node`` on the mesh."""
    return (
        f"Received: from {domain_for(source)}\r\n"
        f"\t({literal_for(source)})\r\n"
        f"\tby {domain_for(node)} ({SOFTWARE}) with {_with(smtputf8, tls=False, authenticated=False)};\r\n"
        f"\t{_date(now)}\r\n"
    ).encode("ascii")


def return_path(reverse_path: str) -> bytes:
    """The ``Return-Path:`` line written at final delivery; ``""`` is the null path of a bounce."""
    return f"Return-Path: <{reverse_path}>\r\n".encode()
