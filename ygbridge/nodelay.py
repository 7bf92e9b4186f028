"""Replies go out at once: a server that writes a response in several pieces must not have the
later ones held back by Nagle's algorithm until the client's delayed ACK (up to 40 ms each)."""

from __future__ import annotations

import socket
from typing import Any


def send_at_once(transport: Any) -> None:
    """Turn on TCP_NODELAY where the transport is TCP (TLS wrappers and UNIX sockets have none)."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


def _socket(transport: Any) -> socket.socket | None:
    """The TCP socket under a transport (through TLS wrappers), if there is one."""
    for _ in range(4):
        handle = getattr(transport, "socket", None)
        if isinstance(handle, socket.socket):
            return handle if handle.family in (socket.AF_INET, socket.AF_INET6) else None
        transport = getattr(transport, "transport", None)
    return None


def ack_at_once(transport: Any) -> None:
    """ACK what has arrived now instead of up to 40 ms later (Linux TCP_QUICKACK, a one-shot).

    For a server waiting for the rest of a command: a client that sends an IMAP literal and the
    line end after it as two writes (Python's imaplib does) has Nagle's algorithm hold the line end
    back until the literal is ACKed, and a receiver with nothing to answer yet delays that ACK.
    """
    sock = _socket(transport)
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass  # the connection is going away
