"""Replies go out at once: a server that writes a response in several pieces must not have the
later ones held back by Nagle's algorithm until the client's delayed ACK (up to 40 ms each)."""

from __future__ import annotations

from typing import Any


def send_at_once(transport: Any) -> None:
    """Turn on TCP_NODELAY where the transport is TCP (TLS wrappers and UNIX sockets have none)."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)
