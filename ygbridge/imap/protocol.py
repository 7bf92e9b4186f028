"""One IMAP connection on the wire: bounded framing, literals, states, and answers in order.

ygbridge owns its IMAP command layer (docs/twisted.md): this is a plain Protocol over Twisted's
transport. A command is read whole before it is parsed (imap.wire): its lines together at most
``limits.imap_line`` octets, its string literals together at most ``limits.imap_literal`` and
APPEND's message at most ``max_message_size``, each literal refused before a single octet of it
is kept (RFC 7888, RFC 7889). The next command is read only once this one is answered and the
client has read the answers so far, so pipelined commands are answered in order and a client
that does not read cannot make the server hold more than one command's worth of output.
Changes other sessions made to the selected mailbox are reported before each tagged answer,
EXPUNGE only where RFC 3501 7.4.1 allows it. What a command answers before it first waits goes
to the transport in one write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import structlog
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from ygbridge.errors import BadCommand, LoginThrottled, MailboxError, MessageTooBig, NoSuchMailbox
from ygbridge.imap.flow import WriteGate
from ygbridge.imap.mailbox import ImapAccount
from ygbridge.imap.session import SelectedMailbox
from ygbridge.imap.wire import MAX_NUMBER, Parser, appends_message, command_tag
from ygbridge.limits import Limits
from ygbridge.nodelay import ack_at_once

log = structlog.get_logger(__name__)

State = Literal["unauth", "auth", "select", "logout"]
ANY: tuple[State, ...] = ("unauth", "auth", "select")
LOGGED_IN: tuple[State, ...] = ("auth", "select")
SELECTED: tuple[State, ...] = ("select",)

#: A literal announced at the end of a line: {size} or, non-synchronizing, {size+}.
_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}\r?\n\Z")
_COMMAND_NAME = re.compile(rb"[A-Za-z]{1,32}")
#: Commands during which EXPUNGE must not be sent (RFC 3501 7.4.1); their UID forms may.
_NO_EXPUNGE = {b"FETCH", b"STORE", b"SEARCH"}

Handler = Callable[[Any, bytes, Parser], None]


def command(*states: State) -> Callable[[Handler], Handler]:
    """Marks ``do_NAME(self, tag, args)`` as the IMAP command NAME, valid in ``states``."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, "imap_states", frozenset(states))  # noqa: B010  (a function attribute)
        return handler

    return mark


def _not_now(name: str, states: frozenset[State], state: State) -> str:
    """Why command ``name`` (valid in ``states``) cannot be used in ``state``."""
    if state == "unauth":
        return f"{name} needs a login first"
    if "unauth" in states:
        return f"{name} is only valid before login"
    return f"{name} needs a selected mailbox"


def _text(error: object) -> bytes:
    """An error's message as response text: one line of ASCII."""
    return " ".join(str(error).split()).encode("ascii", "backslashreplace")


class ImapProtocol(Protocol):
    """Framing, states and answers; subclasses hold the commands (``@command`` methods).

    A connection that has not logged in is closed after ``limits.imap_unauth_idle`` without a
    command line, and ``limits.imap_login_within`` after it opened however busy it keeps (NOOP
    cannot hold a slot forever without a password); after login, including during IDLE, after
    ``limits.imap_idle`` without a command (RFC 2177 asks clients to renew IDLE every 29 minutes).
    Time comes from ``clock``.
    """

    IDENT = b"ygbridge IMAP4rev1 ready"
    CLOSE_TIMEOUT = 30
    #: A TCP or TLS transport: ITransport, IConsumer, IPushProducer and, for STARTTLS, ITLSTransport.
    transport: Any

    def __init__(self, clock: IReactorTime, limits: Limits, max_message_size: int) -> None:
        self.clock = clock
        self.limits = limits
        self.max_message_size = max_message_size
        self.state: State = "unauth"
        self.account: ImapAccount | None = None
        self.mbox: SelectedMailbox | None = None
        self._logout: Callable[[], None] | None = None
        self.idling = False
        self._gone = False
        self._after_close = 0  # octets received since the connection began to close
        self._writes = WriteGate()
        self._batch: list[bytes] | None = None  # what the command being dispatched has written
        self._timer: IDelayedCall | None = None
        self._login_deadline: IDelayedCall | None = None
        # Input: what arrived and how far it has been read
        self._input = bytearray()
        self._read = 0
        self._scanned = 0
        self._processing = False
        self._busy = False  # a command is at work, or the client has not read the answers
        # The command being read
        self._command = bytearray()
        self._text_size = 0
        self._strings_size = 0
        self._literal_left = 0
        self._refusal: tuple[bytes, bytes] | None = None  # answer of a command whose rest is skipped
        self._line_handler: Callable[[bytes], None] | None = None  # IDLE, AUTHENTICATE
        # What is running, for the EXPUNGE rule
        self._running = b""
        self._uid = False

    # Connection

    def connectionMade(self) -> None:
        self.transport.registerProducer(self._writes, True)
        self.untagged(b"OK [CAPABILITY %b] %b" % (b" ".join(self.capabilities()), self.IDENT))
        self._reset_timeout()
        self._login_deadline = self.clock.callLater(self.limits.imap_login_within, self._no_login)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._writes.stopProducing()
        for timer in (self._timer, self._login_deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self._close_mailbox()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()

    def capabilities(self) -> list[bytes]:
        """The CAPABILITY list for the connection's current state."""
        raise NotImplementedError

    def _reset_timeout(self) -> None:
        period = self.limits.imap_unauth_idle if self.state == "unauth" else self.limits.imap_idle
        if self._timer is not None and self._timer.active():
            self._timer.reset(period)  # cheaper than a new call: a later time only moves it lazily
        else:
            self._timer = self.clock.callLater(period, self._timed_out)

    def _timed_out(self) -> None:
        self.untagged(b"BYE Autologout; connection idle too long")
        self.close_connection()  # connectionLost lets go of the mailbox

    def _no_login(self) -> None:
        self.untagged(b"BYE Autologout; no login in time")
        self.close_connection()

    def logged_in(self) -> None:
        """The client has authenticated: the login deadline no longer applies."""
        self.state = "auth"
        if self._login_deadline is not None and self._login_deadline.active():
            self._login_deadline.cancel()
        self._reset_timeout()

    # Answers

    def write(self, data: bytes) -> None:
        """Send ``data``: what a command answers at once goes out in one transport write."""
        if self._batch is not None:
            self._batch.append(data)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Hand what was written so far to the transport (before it closes or starts TLS)."""
        if self._batch:
            self.transport.write(b"".join(self._batch))
            self._batch.clear()

    def drained(self) -> Deferred[None]:
        """Fires once the transport wants more (what was written so far handed to it first)."""
        self.flush()
        return self._writes.wait()

    def untagged(self, text: bytes) -> None:
        """Write an untagged response line (``* text``)."""
        self.write(b"* " + text + b"\r\n")

    def continuation(self, text: bytes) -> None:
        """Write a continuation request (``+ text``)."""
        self.write(b"+ " + text + b"\r\n")  # the space even without text (RFC 3501 7.5)

    def tagged(self, tag: bytes, status: bytes, text: bytes) -> None:
        """The command's completion (OK, NO or BAD), after the changes it may report."""
        self._report_updates()
        self.write(b"%b %b %b\r\n" % (tag, status, text))

    def _report_updates(self) -> None:
        if self.mbox is not None:
            expunge = self._uid or self._running not in _NO_EXPUNGE
            for line in self.mbox.updates(expunge):
                self.untagged(line)

    def _close_mailbox(self) -> None:
        if self.mbox is not None:
            self.mbox.close()
            self.mbox = None
            self.state = "auth"

    def _changes_arrived(self) -> None:
        """Another session changed the selected mailbox: an IDLE session hears of it at once."""
        if self.idling:
            self._report_updates()

    # Reading: lines and literals

    def dataReceived(self, data: bytes) -> None:
        if self._gone:  # closing: what still arrives is not kept, and past a line's worth
            self._after_close += len(data)  # the client is not listening: cut it off
            if self._after_close > self.limits.imap_line:
                self.transport.abortConnection()
            return
        self._input += data
        self._process()
        if self._literal_left or self._command:
            ack_at_once(self.transport)  # the client may wait for that ACK to send the rest

    def _process(self) -> None:
        """Read commands from the input while no command is at work."""
        if self._processing:
            return  # a command finished while this loop runs: it goes on
        self._processing = True
        try:
            while not self._busy and not self._gone and self._read < len(self._input):
                if self._writes.paused and not self._command and self._line_handler is None:
                    self._wait_for_reader()
                elif self._literal_left:
                    self._literal_data()
                elif not self._next_line():
                    break
        finally:
            self._processing = False
            del self._input[: self._read]
            self._scanned -= self._read
            self._read = 0

    def drop_input(self) -> None:
        """Forget what arrived after the command being run (STARTTLS)."""
        self._read = self._scanned = len(self._input)

    def _wait_for_reader(self) -> None:
        """The client has not read what it was sent: read no more commands until it does."""
        self._pause()
        self._writes.wait().addCallback(lambda _: self._resume())

    def _pause(self) -> None:
        self._busy = True
        self.transport.pauseProducing()

    def _resume(self) -> None:
        self._busy = False
        if not self._gone:
            self.transport.resumeProducing()
            self._process()

    def _literal_data(self) -> None:
        take = min(self._literal_left, len(self._input) - self._read)
        if self._refusal is None:
            self._command += self._input[self._read : self._read + take]
        self._read += take
        self._literal_left -= take

    def _next_line(self) -> bool:
        """Handle the next complete line; False if it has not arrived yet."""
        end = self._input.find(b"\n", max(self._scanned, self._read))
        if end < 0:
            self._scanned = len(self._input)
            if self._text_size + len(self._input) - self._read > self.limits.imap_line:
                self._too_long(self._input[self._read : self._read + 100])
            return False
        line = bytes(self._input[self._read : end + 1])
        self._read = self._scanned = end + 1
        self._reset_timeout()
        if self._line_handler is not None:
            if len(line) > self.limits.imap_line:
                self._too_long(b"")
            else:
                self._line_handler(line.rstrip(b"\r\n"))
            return True
        self._text_size += len(line)
        if self._text_size > self.limits.imap_line:
            self._too_long(line[:100])
            return True
        literal = _LITERAL_AT_END.search(line)
        if literal is None:
            self._command += line.rstrip(b"\r\n")
            self._command_read()
        else:
            self._command += line[: literal.end(2) + 1] + b"\r\n"
            self._literal_announced(literal[1], sync=not literal[2])
        return True

    def _too_long(self, line: bytes | bytearray) -> None:
        tag = command_tag(bytes(self._command or line))
        limit = self.limits.imap_line
        self.write(b"%b BAD Command line too long (at most %d octets)\r\n" % (tag, limit))
        self._hang_up(b"BYE Command line too long")

    def _hang_up(self, why: bytes) -> None:
        self.untagged(why)
        self.close_connection()

    def close_connection(self) -> None:
        """Close once what was written is sent; keep nothing more. A TLS transport closes only
        once the writer is no longer its producer, and then waits for the client's close_notify:
        a client that never sends it, or never reads, is cut off after ``CLOSE_TIMEOUT``, and one
        that sends on at once (more than ``imap_line`` octets)."""
        if self._gone:
            return
        self._gone = True
        self.flush()
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(self.CLOSE_TIMEOUT, self.transport.abortConnection)

    def _literal_announced(self, digits: bytes, sync: bool) -> None:
        """A line ended with {n} or {n+}: take the literal, or refuse it before it is read.

        A refused synchronizing literal is answered at once (the client sends nothing more of
        the command); a refused non-synchronizing one is read and dropped, with the rest of its
        command, up to twice the limit it broke, and beyond that the connection is closed.
        """
        command = bytes(self._command)
        tag = command_tag(command)
        if len(digits) > len(str(MAX_NUMBER)) or int(digits) > MAX_NUMBER:
            self.write(b"%b BAD Literal length out of range\r\n" % tag)
            self._hang_up(b"BYE Cannot find the end of that literal")
            return
        size = int(digits)
        message = appends_message(command[: command.rindex(b"{")])
        if self._refusal is None:
            if message:
                if size > self.max_message_size:
                    self._refusal = (b"NO", _text(MessageTooBig(self.max_message_size)))
            elif self._strings_size + size > self.limits.imap_literal:
                self._refusal = (b"BAD", b"Literal too long (at most %d octets)" % self.limits.imap_literal)
            else:
                self._strings_size += size
        if self._refusal is not None:
            if sync:  # the client sends nothing more of this command
                self._command_read()
                return
            if size > 2 * (self.max_message_size if message else self.limits.imap_literal):
                self.write(b"%b %b %b\r\n" % (tag, *self._refusal))
                self._hang_up(b"BYE Literal too long to skip")
                return
        elif sync:
            what = b"data" if message else b"text"
            self.continuation(b"Ready for %d octets of %b" % (size, what))
        self._literal_left = size

    def _command_read(self) -> None:
        command, refusal = bytes(self._command), self._refusal
        self._command.clear()
        self._text_size = self._strings_size = 0
        self._refusal = None
        if refusal is not None:
            self.tagged(command_tag(command), *refusal)
        elif command.strip():
            self._dispatch(command)

    # Running commands

    def _dispatch(self, command: bytes) -> None:
        self._batch = []
        try:
            self._run_line(command)
        finally:
            self.flush()
            self._batch = None

    def _run_line(self, command: bytes) -> None:
        reader = Parser(command)
        tag = command_tag(command)
        try:
            if tag == b"*":
                raise BadCommand("a command starts with a tag")
            reader.tag()
            reader.sp()
            name = reader.atom("command name")
            if not _COMMAND_NAME.fullmatch(name):
                raise BadCommand("unknown command")
            self.run_command(tag, name.upper(), reader)
        except Exception:
            self._failed(Failure(), tag)

    def run_command(self, tag: bytes, name: bytes, args: Parser, uid: bool = False) -> None:
        """Run command ``name`` (a command's own ``@command`` method) with its arguments."""
        handler = getattr(type(self), "do_" + name.decode("ascii"), None)
        states = getattr(handler, "imap_states", None)
        if handler is None or states is None:
            raise BadCommand(f"unknown command {name.decode('ascii')}")
        if self.state not in states:
            raise BadCommand(_not_now(name.decode("ascii"), states, self.state))
        self._running, self._uid = name, uid
        if args.at_end() or args.skip(b" "):
            handler(self, tag, args)
        else:
            raise BadCommand(f"space expected after {name.decode('ascii')}")

    def run(self, tag: bytes, work: Coroutine[Any, Any, bytes], trycreate: bool = False) -> None:
        """Answer OK with the text ``work`` returns once it is done; read nothing until then.

        Work that finishes at once (answered from memory: STATUS, SELECT of a mailbox already
        open) is answered at once, without pausing the transport.
        """
        done = Deferred.fromCoroutine(work)  # runs until its first wait, nothing is read meanwhile
        answer = done.addCallbacks(
            lambda text: self.tagged(tag, b"OK", text), self._failed, errbackArgs=(tag, trycreate)
        )
        if not answer.called:
            self._pause()
            answer.addBoth(lambda _: self._resume())

    def read_line(self, handler: Callable[[bytes], None] | None) -> None:
        """Give the next lines to ``handler`` (IDLE, AUTHENTICATE) until called with None."""
        self._line_handler = handler

    def _failed(self, failure: Failure, tag: bytes, trycreate: bool = False) -> None:
        error = failure.value
        if failure.check(NoSuchMailbox) and trycreate:
            self.tagged(tag, b"NO", b"[TRYCREATE] " + _text(error))
        elif failure.check(MailboxError):
            self.tagged(tag, b"NO", _text(error))
        elif failure.check(UnauthorizedLogin):
            self.tagged(tag, b"NO", b"[AUTHENTICATIONFAILED] Authentication failed")
        elif failure.check(LoginThrottled):
            self.tagged(tag, b"NO", b"[UNAVAILABLE] Too many failed logins: try again later")
        elif failure.check(BadCommand):
            self.tagged(tag, b"BAD", _text(error))
        else:
            log.error("imap.command_failed", error=repr(error), traceback=failure.getTraceback())
            self.tagged(tag, b"BAD", b"Server error, please try again later")
