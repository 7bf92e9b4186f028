"""What one delivery attempt to a node comes to: the SMTP reply for each recipient, or, when
there were no replies, why (in words for people). Shared by the SMTP client and the queue runner."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from twisted.internet import defer, error


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    text: str
    lines: tuple[str, ...] = field(default=(), compare=False, repr=False)  # each line's text

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def describe_failure(failure: BaseException, destination: ipaddress.IPv6Address) -> str:
    """Why an attempt to deliver to ``destination`` ended without replies, for people (status,
    logs, notifications): no exception class names."""
    node = destination.compressed
    if isinstance(failure, (defer.TimeoutError, error.TimeoutError, error.TCPTimedOutError, TimeoutError)):
        return f"no answer from {node} in time"
    if isinstance(failure, (error.ConnectionRefusedError, ConnectionRefusedError)):
        return f"{node} refused the connection: no mail service listens on its port"
    if isinstance(failure, error.NoRouteError) or getattr(failure, "errno", None) in (101, 113):
        return f"no route to node {node}"
    if isinstance(failure, (error.ConnectionLost, error.ConnectionDone, ConnectionError)):
        return f"the connection to {node} was lost during the transaction"
    if isinstance(failure, error.ConnectError):
        return (
            f"cannot connect to {node}: {str(failure).removeprefix('An error occurred while connecting: ')}"
        )
    if isinstance(failure, OSError) and failure.strerror:
        return f"cannot reach {node}: {failure.strerror}"
    return f"delivery to {node} failed: {failure}" if str(failure) else f"delivery to {node} failed"
