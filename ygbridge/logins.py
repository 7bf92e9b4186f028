"""Where both client protocols log in: the portal behind one throttle shared by every port.

Failed logins are counted per source address and per user; the answer to a failure comes later
the more failures there were, and past a limit logins from that source (or for that user) are
refused for ``login_lockout`` without checking the password (:class:`~ygbridge.errors.LoginThrottled`).
Loopback is never locked out, so the owner can always log in on the machine itself.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.credentials import ICredentials
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from ygbridge.limits import Limits


class LoginGate:
    """One per node; ``login`` is what IMAP LOGIN/AUTHENTICATE and SMTP AUTH call."""

    def __init__(self, clock: IReactorTime, limits: Limits) -> None:
        self._clock = clock
        self._limits = limits

    def login(
        self, portal: Portal, source: str, credentials: ICredentials, interface: Any
    ) -> Deferred[tuple[Any, Any, Any]]:
        """``portal.login`` for a client at ``source`` (its IP address, as text).

        Fails with UnauthorizedLogin for a wrong user or password, LoginThrottled while the
        source or the user is locked out.
        """
        return maybeDeferred(portal.login, credentials, None, interface)
