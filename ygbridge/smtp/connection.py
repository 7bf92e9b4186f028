"""One SMTP connection's machinery, below the commands: bounded framing, one command at a time,
replies in order, bounds on errors and time (the injected clock), and flow control.

A command's handler may be a coroutine (it waits for the database): until it is done, later
lines stay in the buffer (RFC 2920 PIPELINING) and reading pauses past :data:`HOLD_LINES`
command lines' worth. Errors raised on purpose become their SMTP replies (:func:`refusal`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from twisted.internet import protocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

from ygbridge.errors import AddressError, InsufficientStorage, QuotaExceeded, SenderMismatch
from ygbridge.limits import Limits
from ygbridge.nodelay import send_at_once
from ygbridge.quota import DiskFloor
from ygbridge.smtp.commands import Refused, Reply
from ygbridge.smtp.framing import LineBuffer, Overflow
from ygbridge.smtp.spool import Offload, at_once

log = structlog.get_logger(__name__)

#: Command lines' worth (``smtp_line`` each) of pipelined input held while a reply waits; past it
#: the connection stops reading until the reply is out (64 KiB with the default line limit).
HOLD_LINES = 32
#: Seconds a connection closed by the server may take to go (a TLS one waits for the client's
#: close_notify, which a hostile client never sends) before it is cut off.
CLOSE_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServerSettings:
    """What bounds every SMTP connection of a port."""

    clock: IReactorTime
    limits: Limits
    max_size: int
    disk: DiskFloor | None = None
    #: Where a message's spool file is written and read (worker threads; by default in place).
    offload: Offload = at_once


def source(peer: IAddress) -> str:
    """The client's IP address as text (``local`` for a UNIX socket)."""
    host = getattr(peer, "host", None)
    return host.split("%", 1)[0] if isinstance(host, str) else "local"


def refusal(error: BaseException) -> Reply | None:
    """The reply for an error raised on purpose by a delivery, the store or a policy."""
    if isinstance(error, Refused):
        return error.reply
    if isinstance(error, QuotaExceeded):
        return Reply(452, "4.7.0", str(error))
    if isinstance(error, InsufficientStorage):
        return Reply(452, "4.3.1", str(error))
    if isinstance(error, SenderMismatch):
        return Reply(550, "5.7.1", str(error))
    if isinstance(error, AddressError):
        return Reply(553, "5.1.3", str(error))
    return None


class Connection(protocol.Protocol):
    """The machinery; :class:`~ygbridge.smtp.protocol.SMTPServer` adds the commands."""

    def __init__(self, settings: ServerSettings, hostname: str) -> None:
        self._settings = settings
        self._limits = settings.limits
        self._host = hostname
        self._lines = LineBuffer(settings.limits.smtp_line)
        self._out: list[bytes] = []
        self._waiter: Deferred[bytes] | None = None  # a prompt (AUTH) waiting for its answer
        self._busy = False
        self._looping = False
        self._paused = False
        self._closed = False
        self._expired = False
        self._offences = 0
        self._junk = 0
        self._idle: IDelayedCall | None = None
        self._session: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None

    @property
    def _wire(self) -> Any:
        """The transport while connected (TCP, TLS, or a test's StringTransport)."""
        assert self.transport is not None
        return self.transport

    # -- connection

    def connectionMade(self) -> None:
        send_at_once(self._wire)
        self._session = self._settings.clock.callLater(self._limits.smtp_session, self._session_over)
        self._write(Reply(220, None, f"{self._host} ESMTP ygbridge"))
        self._flow()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._limits.smtp_idle)
        self._lines.add(data)
        self._process()

    def connectionLost(self, reason: object = None) -> None:
        self._closed = True
        self._stop_timers()
        if self._waiter is not None:
            self._waiter.cancel()

    # -- input

    def _process(self) -> None:
        if self._looping:
            return
        self._looping = True
        try:
            while not self._closed:
                streamed = None if self._busy else self._stream()
                if streamed is not None:
                    if not streamed:
                        break
                    continue
                if self._busy and self._waiter is None:
                    break
                line = self._lines.line()
                if line is None:
                    break
                if isinstance(line, Overflow):
                    self._overflow(line)
                elif self._waiter is not None:
                    waiter, self._waiter = self._waiter, None
                    waiter.callback(line)
                else:
                    self._command(line)
        finally:
            self._looping = False
        self._flush()
        self._flow()

    def _stream(self) -> bool | None:
        """Consume streamed octets (DATA, BDAT): None when not streaming, False once the buffer is empty."""
        return None

    def _command(self, line: bytes) -> None:
        raise NotImplementedError

    def _overflow(self, overflow: Overflow) -> None:
        self._offences += 1
        if self._offences >= self._limits.smtp_line_offences:
            self._close(Reply(421, "4.7.0", f"{self._host} Too many overlong lines, closing connection"))
        elif overflow is Overflow.START:
            self._reply(Reply(500, "5.5.2", f"Line too long (limit {self._limits.smtp_line} octets)"))

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a command's coroutine; until it is done, later commands wait their turn."""
        done = Deferred.fromCoroutine(self._guarded(work))
        if not done.called:
            self._busy = True
            done.addBoth(self._done)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except CancelledError:
            pass  # the connection went away
        except Exception as exc:
            self._failed(exc)

    def _failed(self, error: Exception) -> None:
        reply = refusal(error)
        if reply is None:
            log.error("smtp.local_error", peer=source(self._wire.getPeer()), error=repr(error))
            reply = Reply(451, "4.3.0", "Local error, try again later")
        self._reply(reply)

    def _done(self, _: object) -> None:
        self._busy = False
        if self._expired:
            self._session_over()
        else:
            self._process()

    def _ask(self, prompt: Reply) -> Deferred[bytes]:
        """Send an AUTH prompt; fires with the client's next line."""
        self._write(prompt)
        self._waiter = Deferred()
        return self._waiter

    # -- output

    def _write(self, reply: Reply) -> None:
        self._out.append(reply.encode())
        if not self._looping:
            self._flush()

    def _flush(self) -> None:
        if self._out and not self._closed:
            self._wire.write(b"".join(self._out))
        self._out.clear()

    def _reply(self, reply: Reply) -> None:
        self._write(reply)
        if reply.code >= 400:
            self._count_junk()

    def _count_junk(self) -> bool:
        """Count a command that made no progress; True if that closed the connection."""
        self._junk += 1
        if self._junk > self._limits.smtp_junk_commands and not self._closed:
            self._close(Reply(421, "4.7.0", f"{self._host} Too many errors or idle commands, closing"))
            return True
        return False

    def _close(self, reply: Reply) -> None:
        self._write(reply)
        self._flush()
        self._closed = True
        self._stop_timers()
        self._wire.loseConnection()
        self._abort = self._settings.clock.callLater(CLOSE_TIMEOUT, self._wire.abortConnection)

    # -- time and flow

    def _flow(self) -> None:
        """Idle timer while the client is due to speak; stop reading while too much is held."""
        if self._closed:
            return
        clock, waiting = self._settings.clock, not self._busy or self._waiter is not None
        if waiting and (self._idle is None or not self._idle.active()):
            self._idle = clock.callLater(self._limits.smtp_idle, self._idle_over)
        elif not waiting and self._idle is not None and self._idle.active():
            self._idle.cancel()
        hold = self._busy and len(self._lines) > HOLD_LINES * self._limits.smtp_line
        if hold != self._paused:
            self._paused = hold
            (self._wire.pauseProducing if hold else self._wire.resumeProducing)()

    def _idle_over(self) -> None:
        self._close(Reply(421, "4.4.2", f"{self._host} Idle for too long, closing connection"))

    def _session_over(self) -> None:
        if self._busy and self._waiter is None:
            self._expired = True  # first the reply the client waits for
        elif not self._closed:
            self._close(Reply(421, "4.4.2", f"{self._host} Session time limit reached, closing connection"))

    def _stop_timers(self) -> None:
        for timer in (self._idle, self._session, self._abort):
            if timer is not None and timer.active():
                timer.cancel()
