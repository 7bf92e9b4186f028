"""Passwords (argon2id via PyNaCl) and the credentials checker shared by submission and IMAP."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import nacl.exceptions
import nacl.pwhash
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ygbridge.addressing import MailAddress
from ygbridge.errors import AddressError, UserError
from ygbridge.store import users
from ygbridge.store.db import StoreThread


def hash_password(password: str) -> bytes:
    """An argon2id hash string of ``password`` (slow on purpose: run it off the reactor)."""
    return nacl.pwhash.argon2id.str(password.encode("utf-8"))


def verify_password(stored: bytes, password: str) -> bool:
    """True when ``password`` matches the stored argon2id hash."""
    try:
        return nacl.pwhash.verify(stored, password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError):
        return False


def login_name(login: str, node: ipaddress.IPv6Address | None) -> str:
    """The user name a client logs in as: ``alice`` or ``alice@<this node's domain>``."""
    if "@" in login:
        address = MailAddress.parse(login)
        if address.node != node:
            raise UserError(f"{login} is not an address of this node")
        login = address.local
    return users.check_name(login)


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Checks user name (or full address) and password; the avatar id is the user name."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        reactor: IReactorThreads,
        store: StoreThread,
        node: Callable[[], ipaddress.IPv6Address | None],
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._node = node

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        username, password = credentials.username, credentials.password
        try:
            if isinstance(username, bytes):
                username = username.decode("utf-8")
            if isinstance(password, bytes):
                password = password.decode("utf-8")
            name = login_name(username, self._node())
        except (UnicodeDecodeError, AddressError, UserError):
            raise UnauthorizedLogin("unknown user or wrong password") from None
        stored = await self._store.run(users.password_hash, name)
        ok = stored is not None and await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), verify_password, stored, password
        )
        if not ok:
            raise UnauthorizedLogin("unknown user or wrong password")
        return name
