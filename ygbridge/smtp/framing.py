"""SMTP framing on byte chunks: bounded command lines, and DATA as a stream (pure, no I/O).

Command lines are found with ``bytes.find`` within the line limit only, so a line that never ends
costs neither memory nor quadratic work: past the limit it is discarded up to its LF. DATA is
decoded chunk by chunk (RFC 5321 section 4.5.2): only CRLF.CRLF ends it (a bare LF or CR never
does: no SMTP smuggling), and the dot after each CRLF is removed with one ``bytes.replace``.
"""

from __future__ import annotations

import enum

END_OF_DATA = b"\r\n.\r\n"


class Overflow(enum.Enum):
    """A command line grew past the limit: ``START`` once, ``MORE`` for each further limit's worth."""

    START = "start"
    MORE = "more"


class LineBuffer:
    """Received bytes not yet handled; hands out command lines of at most ``limit`` octets with CRLF."""

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._discarded: int | None = None  # octets dropped of the overlong line being skipped

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def take(self, limit: int | None = None) -> bytes:
        """Up to ``limit`` buffered octets (all of them by default), for DATA and BDAT."""
        if limit is None or limit >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:limit])
            del self._buffer[:limit]
        return data

    def clear(self) -> None:
        """Drop everything buffered."""
        self._buffer.clear()

    def line(self) -> bytes | Overflow | None:
        """The next line without its line end (CRLF, or a bare LF as most servers accept in
        commands), an :class:`Overflow` for a line past the limit, or None until more arrives."""
        buffer = self._buffer
        if self._discarded is not None:
            end = buffer.find(b"\n")
            if end < 0:
                before, self._discarded = self._discarded, self._discarded + len(buffer)
                buffer.clear()
                return Overflow.MORE if before // self._limit < self._discarded // self._limit else None
            del buffer[: end + 1]
            self._discarded = None
        end = buffer.find(b"\n", 0, self._limit)
        if end < 0:
            if len(buffer) < self._limit:
                return None
            del buffer[: self._limit]  # no line end in there
            self._discarded = 0
            return Overflow.START
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line


class DataDecoder:
    """Turns what follows ``354`` into message bytes; :meth:`feed` says where the message ended."""

    def __init__(self) -> None:
        # The virtual CRLF before the first line: it lets one pattern find a dot on the first
        # line and an empty message; the first two output octets are dropped for it.
        self._held = b"\r\n"
        self._skip = 2

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """The message bytes decoded from ``data``, and the bytes after the end of the message
        (None while it has not ended). A few octets that may start the end are held back."""
        buffer = self._held + data
        end = buffer.find(END_OF_DATA)
        if end >= 0:
            out, rest = buffer[: end + 2], buffer[end + len(END_OF_DATA) :]
            self._held = b""
        else:
            keep = _partial_end(buffer)
            out, rest = buffer[: len(buffer) - keep], None
            self._held = buffer[len(buffer) - keep :]
        out = out.replace(b"\r\n.", b"\r\n")
        if self._skip:
            skipped = min(self._skip, len(out))
            out, self._skip = out[skipped:], self._skip - skipped
        return out, rest


def _partial_end(buffer: bytes) -> int:
    """How many final octets of ``buffer`` could begin CRLF.CRLF (or a CRLF-dot to unstuff)."""
    for keep in range(len(END_OF_DATA) - 1, 0, -1):
        if buffer.endswith(END_OF_DATA[:keep]):
            return keep
    return 0
