"""The yggdrasil admin socket on the wire: JSON framing and a FIFO of requests, one in flight.

Requests are single JSON objects with ``keepalive: true``; answers are pretty-printed over
many lines, so they are decoded incrementally rather than split on newlines.
"""

from __future__ import annotations

import codecs
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ygbridge.errors import (
    ConfigError,
    RouterConnectionLost,
    RouterError,
    RouterReplyError,
    RouterRequestError,
    RouterTimeout,
)
from ygbridge.router.state import (
    NodeIdentity,
    Peer,
    Session,
    TunState,
    parse_peers,
    parse_self,
    parse_sessions,
    parse_tun,
)
from ygbridge.transport import connection

REQUEST_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_ANSWER = 8 * 1024 * 1024


@dataclass
class _Request:
    name: str
    arguments: dict[str, str]
    answer: Deferred[dict[str, Any]] = field(default_factory=Deferred)


class AdminProtocol(Protocol):
    """Client side of one admin socket connection.

    A request unanswered after ``timeout`` seconds fails with RouterTimeout and the connection
    is dropped, since later answers could no longer be matched to their requests.
    """

    def __init__(self, clock: IReactorTime, timeout: float = REQUEST_TIMEOUT) -> None:
        self._clock = clock
        self._timeout = timeout
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._buffer = ""
        self._queue: deque[_Request] = deque()
        self._current: _Request | None = None
        self._timer: IDelayedCall | None = None
        self._closed = False  # no more requests: the connection is gone or being dropped
        self._close_waiters: list[Deferred[None]] | None = []  # None once connectionLost ran

    def request(self, name: str, **arguments: str) -> Deferred[dict[str, Any]]:
        """Queue a request; fires with the answer's ``response`` member."""
        if self._closed:
            return fail(RouterConnectionLost(f"the yggdrasil admin connection is closed; {name} not sent"))
        pending = _Request(name, arguments)
        self._queue.append(pending)
        self._send_next()
        return pending.answer

    def get_self(self) -> Deferred[NodeIdentity]:
        """The router's identity (getSelf)."""
        return self.request("getSelf").addCallback(parse_self)

    def get_tun(self) -> Deferred[TunState]:
        """The router's TUN state (getTun)."""
        return self.request("getTun").addCallback(parse_tun)

    def get_peers(self) -> Deferred[tuple[Peer, ...]]:
        """The peers that are up (getPeers)."""
        return self.request("getPeers").addCallback(parse_peers)

    def get_sessions(self) -> Deferred[tuple[Session, ...]]:
        """The router's sessions with other nodes (getSessions)."""
        return self.request("getSessions").addCallback(parse_sessions)

    def when_closed(self) -> Deferred[None]:
        """A fresh Deferred that fires once the connection is gone."""
        if self._close_waiters is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        return waiter

    def _send_next(self) -> None:
        if self._current is not None or not self._queue:
            return
        self._current = pending = self._queue.popleft()
        message = {"request": pending.name, "arguments": pending.arguments, "keepalive": True}
        connection(self).write(json.dumps(message).encode("utf-8"))
        self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        try:
            self._buffer += self._text.decode(data)
        except UnicodeDecodeError:
            self._abort(RouterReplyError("yggdrasil sent an answer that is not UTF-8"))
            return
        while not self._closed:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return
            if not self._buffer.startswith("{"):
                junk = self._buffer[:60]
                self._abort(RouterReplyError(f"yggdrasil sent something that is not JSON: {junk!r}"))
                return
            try:
                answer, end = self._json.raw_decode(self._buffer)
            except json.JSONDecodeError:
                if len(self._buffer) > MAX_ANSWER:
                    self._abort(RouterReplyError("yggdrasil sent an answer too large to be one"))
                return  # incomplete: wait for more
            self._buffer = self._buffer[end:]
            self._answered(answer)

    def _answered(self, answer: dict[str, Any]) -> None:
        pending = self._current
        if pending is None:
            self._abort(RouterReplyError("yggdrasil answered a request that was never sent"))
            return
        echo = answer.get("request")
        if isinstance(echo, dict) and str(echo.get("request", "")).lower() != pending.name.lower():
            asked = echo.get("request")
            self._abort(RouterReplyError(f"yggdrasil answered {asked!r} while ygbridge asked {pending.name}"))
            return
        self._finish()
        response = answer.get("response") or {}
        if str(answer.get("status", "")).lower() != "success":
            reason = str(answer.get("error") or "no reason given")
            pending.answer.errback(RouterRequestError(pending.name, reason))
        elif not isinstance(response, dict):
            pending.answer.errback(RouterReplyError(f"yggdrasil answered {pending.name} with {response!r}"))
        else:
            pending.answer.callback(response)
        self._send_next()

    def _finish(self) -> None:
        """The request in flight is settled: stop its timer and clear the slot."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._current = None

    def _timed_out(self) -> None:
        name = self._current.name if self._current else "a request"
        self._abort(RouterTimeout(f"yggdrasil did not answer {name} within {self._timeout:g} seconds"))

    def _abort(self, error: RouterError) -> None:
        """Fail the request in flight with ``error`` and drop the connection (its answers can no
        longer be matched to requests); connectionLost fails everything still queued."""
        pending = self._current
        self._finish()
        self._closed = True
        if pending is not None:
            pending.answer.errback(error)
        connection(self).abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        pending = self._current
        self._finish()
        waiting = ([pending] if pending else []) + list(self._queue)
        self._queue.clear()
        for request in waiting:
            error = f"the yggdrasil admin connection closed before {request.name} was answered"
            request.answer.errback(RouterConnectionLost(error))
        waiters, self._close_waiters = self._close_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)


def admin_endpoint(reactor: Any, uri: str) -> IStreamClientEndpoint:
    """The client endpoint for an AdminListen value: ``unix:///path`` or ``tcp://host:port``.

    ``reactor`` provides IReactorUNIX, IReactorTCP and IReactorTime.
    """
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "unix" and rest:
        return UNIXClientEndpoint(reactor, rest, timeout=CONNECT_TIMEOUT)
    if scheme.lower() == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if host and port.isdigit():
            return HostnameEndpoint(reactor, host, int(port), timeout=CONNECT_TIMEOUT)
    raise ConfigError(f"[yggdrasil] admin = {uri!r}: expected unix:///path/to/socket or tcp://host:port")
