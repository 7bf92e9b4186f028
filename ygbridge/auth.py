"""Passwords (argon2id via PyNaCl) and the credentials checker shared by submission and IMAP."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from typing import ParamSpec, TypeVar

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
from ygbridge.store.db import DBThread

P = ParamSpec("P")
T = TypeVar("T")


#: argon2id parameters of new hashes: libsodium's "interactive" (64 MiB, 2 passes).
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
_CURRENT_PREFIX = b"$argon2id$v=19$m=%d,t=%d,p=1$" % (MEMLIMIT // 1024, OPSLIMIT)


def hash_password(password: str) -> bytes:
    """An argon2id hash string of ``password`` (slow on purpose: run it off the reactor)."""
    return nacl.pwhash.argon2id.str(password.encode("utf-8"), opslimit=OPSLIMIT, memlimit=MEMLIMIT)


def needs_rehash(stored: bytes) -> bool:
    """True for a hash made with other parameters than :func:`hash_password` uses today."""
    return not stored.startswith(_CURRENT_PREFIX)


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
    """Checks user name (or full address) and password; the avatar id is the user name.

    An unknown user costs one argon2 verification too (against a dummy hash made once), so a
    user's existence does not show in the time an answer takes. How many checks run at once
    (each argon2id verification holds 64 MiB) is the LoginGate's to bound: every login goes
    through it. A hash with older, costlier parameters is replaced by one with today's after a
    successful login.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        reactor: IReactorThreads,
        store: DBThread,
        node: Callable[[], ipaddress.IPv6Address | None],
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._node = node
        self._dummy: bytes | None = None

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        """The user name, UTF-8 encoded (twisted.cred's avatar ids are bytes)."""
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> bytes | tuple[()]:
        try:
            username = _text(credentials.username)
            password = _text(credentials.password)
            name = login_name(username, self._node())
        except (UnicodeDecodeError, AddressError, UserError):
            raise UnauthorizedLogin("unknown user or wrong password") from None
        stored = await self._store.run(users.password_hash, name)
        verified = await self._verify(stored, password)
        if stored is None or not verified:
            raise UnauthorizedLogin("unknown user or wrong password")
        if needs_rehash(stored):
            rehashed = await self._in_thread(hash_password, password)
            await self._store.run(users.set_password, name, rehashed)
        return name.encode("utf-8")

    async def _verify(self, stored: bytes | None, password: str) -> bool:
        """Verify in a thread; without a stored hash, against the dummy one (and fail)."""
        if stored is not None:
            return await self._in_thread(verify_password, stored, password)
        if self._dummy is None:
            self._dummy = await self._in_thread(hash_password, secrets.token_urlsafe(16))
        await self._in_thread(verify_password, self._dummy, password)
        return False

    def _in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args, **kwargs)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
