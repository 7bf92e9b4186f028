"""Transports for driving protocols without sockets, beyond twisted.internet.testing's."""

from __future__ import annotations

from twisted.internet.testing import StringTransport


class CountingTransport(StringTransport):
    """Counts what the protocol writes (and keeps its last 200 bytes) instead of keeping it all:
    for answers too large to hold, as a benchmark's FETCH of a whole large mailbox."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.tail = b""

    def write(self, data: bytes) -> None:
        """Count ``data`` and keep the end of what was written."""
        self.written += len(data)
        self.tail = (self.tail + data)[-200:]
