"""Accepting a message for delivery: local recipients at once, others into the durable queue;
and bouncing what the queue gives up on back into the sender's INBOX."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable

import structlog
from twisted.internet.interfaces import IReactorTime

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.dsn import RecipientFailure, failure_report, report_id
from ygbridge.errors import AddressError, UserError
from ygbridge.mailstore import Mailstore
from ygbridge.message import message_id
from ygbridge.store import queue, users
from ygbridge.store.db import StoreThread

log = structlog.get_logger(__name__)


class Outbox:
    """Where submission and the mesh hand over accepted messages."""

    def __init__(
        self,
        clock: IReactorTime,
        store: StoreThread,
        mailstore: Mailstore,
        node: Callable[[], ipaddress.IPv6Address | None],
        queued: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self._store = store
        self._mailstore = mailstore
        self._node = node
        self._queued = queued

    async def local_users(self, names: list[str]) -> set[str]:
        """Which of ``names`` have an account on this node."""
        return await self._store.run(users.existing_users, names)

    async def accept(self, sender: MailAddress, recipients: list[MailAddress], body: bytes) -> None:
        """Make the message durable for every recipient; returns once it is committed.

        A message without a Message-ID gets one, so that retries can be recognised downstream.
        """
        node = self._node()
        mid = message_id(body)
        if mid is None:
            mid = f"<{uuid.uuid4().hex}@{domain_for(sender.node)}>"
            body = f"Message-ID: {mid}\r\n".encode("ascii") + body
        remote = [(str(r), r.node.compressed) for r in dict.fromkeys(recipients) if r.node != node]
        if remote:
            await self._store.run(queue.enqueue, str(sender), body, mid, remote, self._clock.seconds())
        local = [r.local for r in recipients if r.node == node]
        await self.deliver_local(local, body, mid, sender.node)
        for destination in dict.fromkeys(dest for _, dest in remote):
            self._queued(destination)

    async def deliver_local(
        self, names: list[str], body: bytes, mid: str | None, sender_node: ipaddress.IPv6Address
    ) -> None:
        """Store the message in each user's INBOX (once per mailbox, however often retried)."""
        for name in dict.fromkeys(names):
            await self._mailstore.deliver(name, body, message_id=mid, sender_node=sender_node.compressed)

    async def report(
        self, message: queue.QueuedMessage, failures: list[RecipientFailure], action: str
    ) -> None:
        """Put a delivery status notification (``action`` failed or delayed) for ``failures``
        into the sender's INBOX, once however often it is asked for."""
        node = self._node()
        try:
            sender = MailAddress.parse(message.sender)
        except AddressError:
            sender = None
        if node is None or sender is None or sender.node != node:
            log.error(
                "delivery.bounce_dropped", sender=message.sender, reason="sender is not a user of this node"
            )
            return
        domain = domain_for(node)
        mid = report_id(domain, message.message_id, message.id, [f.recipient for f in failures], action)
        report = failure_report(
            domain=domain,
            sender=str(sender),
            original=message.body,
            failures=failures,
            arrival=message.created,
            now=self._clock.seconds(),
            message_id=mid,
            action=action,
        )
        try:
            await self._mailstore.deliver(sender.local, report, message_id=mid, sender_node=node.compressed)
        except UserError as exc:
            log.error("delivery.bounce_dropped", sender=message.sender, reason=str(exc))
