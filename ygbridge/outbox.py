"""Accepting a message for delivery: local recipients at once, others into the durable queue."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from ygbridge.addressing import MailAddress
from ygbridge.mailstore import Mailstore
from ygbridge.message import message_id
from ygbridge.store import queue, users
from ygbridge.store.db import StoreThread


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
        """Make the message durable for every recipient; returns once it is committed."""
        node = self._node()
        mid = message_id(body)
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
