"""Accepting a message for delivery: local recipients at once, others into the durable queue;
and the delivery status notifications for its sender: bounces and delay warnings from the queue,
"delivered" reports at final delivery when the sender asked for them (RFC 3461 NOTIFY=SUCCESS).

Every message that passes through gets its trace lines here (RFC 5321 section 4.4): a
``Received:`` on submission and on mesh receipt, a ``Return-Path:`` at final delivery into a
mailbox. Its visible sender is checked here too (:mod:`ygbridge.senders`). Otherwise the bytes
are stored and sent on exactly as they arrived.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable

import structlog
from twisted.internet.interfaces import IReactorTime

from ygbridge.addressing import MailAddress, domain_for
from ygbridge.dsn import DELIVERED, FAILED, RecipientFailure, failure_report, report_id
from ygbridge.errors import AddressError, SenderMismatch, UserError
from ygbridge.knownusers import KnownUsers
from ygbridge.mailhub import MailHub
from ygbridge.message import has_field, header_section, message_id
from ygbridge.notify import FAILURE, FULL, NO_REQUEST, SUCCESS, DsnRequest
from ygbridge.senders import check_node_sender, check_own_sender
from ygbridge.store import queue, users
from ygbridge.store.batch import GroupCommit
from ygbridge.store.db import DBThread
from ygbridge.trace import SOFTWARE, received_mesh, received_submission, return_path

log = structlog.get_logger(__name__)

#: ``[mesh] foreign_from`` values: refuse such a message, or deliver it with a warning field.
REFUSE, WARN = "refuse", "warn"
WARNING_FIELD = "X-Ygbridge-Warning"
#: What a recipient whose account was deleted between its RCPT and the end of the message is told.
GONE = "550 5.1.1 No such user here: the account was deleted while the message was on its way"


class Intake:
    """Where submission and the mesh hand over accepted messages; ``user_cache``: seconds an
    existing user, once looked up, is taken as existing (:mod:`ygbridge.knownusers`)."""

    def __init__(
        self,
        clock: IReactorTime,
        store: DBThread,
        mailhub: MailHub,
        node: Callable[[], ipaddress.IPv6Address | None],
        queued: Callable[[str, queue.QueuedMessage], None],
        foreign_from: str = REFUSE,
        user_cache: float = 0.0,
    ) -> None:
        self._clock = clock
        self._foreign_from = foreign_from
        self._store = store
        self._enqueue = GroupCommit(store, queue.enqueue)  # submissions that meet: one commit
        self._mailhub = mailhub
        self._node = node
        self._queued = queued
        self._users = KnownUsers(clock, lambda names: store.run(users.existing_users, names), user_cache)

    async def local_users(self, names: list[str]) -> set[str]:
        """Which of ``names`` have an account on this node (a "yes" may be ``user_cache`` seconds old)."""
        return await self._users.existing(names)

    async def accept(
        self,
        sender: MailAddress,
        recipients: list[MailAddress],
        body: bytes,
        dsn: DsnRequest = NO_REQUEST,
        smtputf8: bool = False,
        tls: bool = False,
    ) -> None:
        """Make a message that ``sender`` (authenticated) submitted durable for every recipient;
        returns once it is committed. ``dsn`` is what the sender asked to be told (RFC 3461);
        ``smtputf8``: it was submitted with SMTPUTF8 (RFC 6531), ``tls``: over TLS, which its
        trace line says.

        SenderMismatch unless ``From:`` (and ``Sender:``) is the sender's own address; a message
        without ``From:`` gets the sender's. A message without a Message-ID gets one, so that
        retries can be recognised downstream.
        """
        # The fields put on top are joined to the body once: it may be 32 MiB.
        added = b"" if has_field(body, "From") else f"From: <{sender}>\r\n".encode()
        check_own_sender(added + header_section(body), sender)
        node = self._node()
        mid = message_id(body)
        if mid is None:
            mid = f"<{uuid.uuid4().hex}@{domain_for(sender.node)}>"
            added = f"Message-ID: {mid}\r\n".encode("ascii") + added
        body = received_submission(sender, self._clock.seconds(), smtputf8, tls) + added + body
        remote = [(str(r), r.node.compressed) for r in dict.fromkeys(recipients) if r.node != node]
        queued = (
            await self._enqueue(str(sender), body, mid, remote, self._clock.seconds(), dsn) if remote else []
        )
        for destination, message in queued:
            self._queued(destination, message)
        local = [r for r in recipients if r.node == node]
        stored, gone = await self._store_local(
            [r.local for r in local], return_path(str(sender)) + body if local else body, mid, sender.node
        )
        for names, action in ((stored, DELIVERED), (gone, FAILED)):
            await self._report_outcome(
                str(sender), [str(MailAddress(n, sender.node)) for n in names], body, dsn, action
            )

    async def deliver_local(
        self,
        names: list[str],
        body: bytes,
        mid: str | None,
        sender_node: ipaddress.IPv6Address,
        reverse_path: str | None = None,
        dsn: DsnRequest = NO_REQUEST,
        smtputf8: bool = False,
    ) -> None:
        """Store a message that node ``sender_node`` sent over the mesh in each user's INBOX
        (once per mailbox, however often retried); ``smtputf8``: it came with SMTPUTF8.

        ``reverse_path`` is the envelope sender (``""`` for ``MAIL FROM:<>``), written as
        ``Return-Path:``; it gets a "delivered" report for the recipients whose ``dsn`` asks for
        one (NOTIFY=SUCCESS, keys ``str(MailAddress)``). SenderMismatch if ``From:``/``Sender:``
        is not in the sending node's domain, unless ``[mesh] foreign_from = warn``: then a
        warning field says so.
        """
        node = self._node()
        try:
            check_node_sender(body, sender_node)
        except SenderMismatch as exc:
            if self._foreign_from != WARN:
                log.warning("mesh.sender_mismatch", source=sender_node.compressed, error=str(exc))
                raise
            warning = f"{WARNING_FIELD}: {SOFTWARE} could not verify the sender: {exc}\r\n"
            added = warning.encode("ascii", "replace")
        else:
            added = b""
        if node is not None:
            added = received_mesh(sender_node, node, self._clock.seconds(), smtputf8) + added
        body = (return_path(reverse_path) if reverse_path is not None else b"") + added + body  # one copy
        stored, gone = await self._store_local(names, body, mid, sender_node)
        if node is not None and reverse_path:
            for done, action in ((stored, DELIVERED), (gone, FAILED)):
                recipients = [str(MailAddress(name, node)) for name in done]
                await self._report_outcome(reverse_path, recipients, body, dsn, action)

    async def _store_local(
        self,
        names: list[str],
        body: bytes,
        mid: str | None,
        sender_node: ipaddress.IPv6Address,
    ) -> tuple[list[str], list[str]]:
        """Final delivery (``body`` has its Return-Path) into each user's INBOX once: the users
        who had not got it before (a retry finds the others have), and those whose account was
        deleted since their RCPT was accepted (their sender is told, as by a bounce)."""
        stored, gone = [], []
        for name in dict.fromkeys(names):
            try:
                uid = await self._mailhub.deliver(
                    name, body, message_id=mid, sender_node=sender_node.compressed
                )
            except UserError:
                log.warning("delivery.user_gone", user=name, message_id=mid)
                self._users.forget(name)
                gone.append(name)
                continue
            if uid is not None:
                stored.append(name)
        return stored, gone

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
            envid=message.dsn.envid,
            full=action == FAILED and message.dsn.ret == FULL,
        )
        await self._deliver_report(sender, report, mid)

    async def _report_outcome(
        self, sender: str, recipients: list[str], body: bytes, dsn: DsnRequest, action: str
    ) -> None:
        """A report to ``sender`` that the final delivery to ``recipients`` was done (``action``
        delivered) or could not be (failed: the account was deleted), for the recipients it
        asked to be told of that (RFC 3461; by default, failures only)."""
        wanted = [r for r in recipients if dsn.notify(r).wants(SUCCESS if action == DELIVERED else FAILURE)]
        node = self._node()
        if not wanted or node is None:
            return
        try:
            address = MailAddress.parse(sender)
        except AddressError:
            return
        domain, now = domain_for(node), self._clock.seconds()
        mid = report_id(domain, message_id(body), 0, wanted, action)
        status, diagnostic = (
            ("2.0.0", "250 2.0.0 delivered to the mailbox") if action == DELIVERED else ("5.1.1", GONE)
        )
        report = failure_report(
            domain=domain,
            sender=sender,
            original=body,
            failures=[RecipientFailure(r, status, diagnostic, domain, dsn.notify(r).orcpt) for r in wanted],
            arrival=now,
            now=now,
            message_id=mid,
            action=action,
            envid=dsn.envid,
            full=action == FAILED and dsn.ret == FULL,
        )
        if address.node == node:
            await self._deliver_report(address, report, mid)
        else:  # back over the mesh, from the null sender so that it can never bounce in turn
            destination = address.node.compressed
            for queued in await self._enqueue("", report, mid, [(str(address), destination)], now):
                self._queued(*queued)

    async def _deliver_report(self, sender: MailAddress, report: bytes, mid: str) -> None:
        """Final delivery of a report this node wrote into its own user's INBOX."""
        node = self._node()
        assert node is not None
        try:
            await self._mailhub.deliver(
                sender.local, return_path("") + report, message_id=mid, sender_node=node.compressed
            )
        except UserError as exc:
            log.error("delivery.bounce_dropped", sender=str(sender), reason=str(exc))
