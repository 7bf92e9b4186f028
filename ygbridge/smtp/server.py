"""What the submission and mesh SMTP servers share: the delivery interface and one transaction.

The protocol (``smtp/protocol.py``) owns the wire; a :class:`Delivery` decides who may send
and to whom, and a :class:`Transaction` collects one message for all its recipients and
commits it once, so the single reply after DATA reflects the one commit. The transaction also
keeps what the sender asked to be told (RFC 3461) and whether it asked for SMTPUTF8 (RFC 6531);
RSET or a new EHLO drops it with the transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from zope.interface import Interface

from ygbridge.addressing import MailAddress
from ygbridge.errors import InsufficientStorage
from ygbridge.notify import DsnRequest, Notify
from ygbridge.smtp.commands import MailParams, Path, Refused
from ygbridge.smtp.spool import Offload, Spool

#: Stores one message: its recipients, its bytes and the sender's DSN request.
Commit = Callable[[list[MailAddress], bytes, DsnRequest], Awaitable[None]]


class IDelivery(Interface):
    """The twisted.cred interface of a submission login: its avatar is a :class:`Delivery`."""


class Delivery(Protocol):
    """One client's mail transactions on a port; refusals are raised as ``Refused``."""

    async def mail(self, path: Path, params: MailParams) -> Commit:
        """Check the reverse-path; returns how the message will be committed."""

    async def rcpt(self, path: Path) -> MailAddress:
        """Check one forward-path; returns the recipient's address."""


class DataTooLarge(Refused):
    """The message grew past the configured size limit during DATA."""

    def __init__(self, limit: int) -> None:
        super().__init__(552, "5.3.4", f"Message exceeds the size limit of {limit} bytes")


class Transaction:
    """One message: its recipients and its bytes (a :class:`~ygbridge.smtp.spool.Spool`, whose
    file I/O runs on ``offload``), held whole in memory only once, when it is committed."""

    def __init__(self, max_size: int, commit: Commit, params: MailParams, offload: Offload) -> None:
        self._spool = Spool(offload)
        self._size = 0
        self._max_size = max_size
        self._commit = commit
        self._refusal: Exception | None = None
        self._params = params
        self._notify: dict[str, Notify] = {}
        self.recipients: list[MailAddress] = []
        #: BDAT chunks have been received: DATA may not follow (RFC 3030).
        self.chunked = False

    @property
    def size(self) -> int:
        """Octets of DATA received so far."""
        return self._size

    @property
    def refusal(self) -> Exception | None:
        """Why the message will be refused (too large), once that is known; a spool that
        cannot be written refuses it at :meth:`commit`."""
        return self._refusal

    @property
    def smtputf8(self) -> bool:
        """MAIL FROM had the SMTPUTF8 parameter: paths may hold UTF-8 (RFC 6531)."""
        return self._params.smtputf8

    def add(self, recipient: MailAddress, notify: Notify) -> None:
        """Take ``recipient`` with its NOTIFY/ORCPT request (a recipient given twice: the last)."""
        self.recipients.append(recipient)
        self._notify[str(recipient)] = notify

    @property
    def dsn(self) -> DsnRequest:
        """What the sender asked to be told, keyed as :class:`~ygbridge.notify.DsnRequest` wants."""
        wanted = {recipient: notify for recipient, notify in self._notify.items() if notify != Notify()}
        return DsnRequest(self._params.ret, self._params.envid, wanted)

    def write(self, data: bytes) -> None:
        """Record decoded DATA; past the size limit the rest is dropped and :meth:`commit`
        refuses the message."""
        self._size += len(data)
        if self._refusal is not None or not data:
            return
        if self._size > self._max_size:
            self._drop(DataTooLarge(self._max_size))
            return
        self._spool.write(data)

    def _drop(self, refusal: Exception) -> None:
        self._refusal = refusal
        self._spool.close()

    async def commit(self) -> None:
        """Store the message for every recipient at once (or raise why it cannot be)."""
        if self._refusal is not None:
            raise self._refusal
        try:
            body = await self._spool.read()
        except OSError as exc:
            reason = f"Insufficient system storage: cannot spool the message ({exc})"
            raise InsufficientStorage(reason) from None
        finally:
            self.abort()
        await self._commit(self.recipients, body, self.dsn)

    def abort(self) -> None:
        """Drop what was collected (connection lost, reset, or committed)."""
        self._spool.close()
