"""The outgoing queue: blocking functions for the DB thread.

A message stays queued for a recipient until that recipient is delivered or finally failed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import peewee

from ygbridge.notify import NO_REQUEST, DsnRequest, Notify, decode_events, encode_events
from ygbridge.store import sql
from ygbridge.store.models import OutgoingMessage, OutgoingRecipient, database, dicts

_INSERT_MESSAGE = (
    'INSERT INTO "outgoing_message" ("sender", "body", "message_id", "created", "ret", "envid") '
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_RECIPIENT = (
    'INSERT INTO "outgoing_recipient" ("message_id", "recipient", "destination", "attempts", '
    '"next_attempt", "warned", "notify", "orcpt") VALUES (?, ?, ?, 0, ?, ?, ?, ?)'
)


@dataclass(frozen=True)
class QueuedMessage:
    """One message with its recipients on one destination node."""

    id: int
    sender: str
    body: bytes
    message_id: str | None
    created: float
    recipients: tuple[tuple[int, str], ...]  # (recipient row id, address)
    attempts: int
    last_error: str | None
    warned: bool  # every recipient's sender has had a delay warning
    dsn: DsnRequest = NO_REQUEST  # what the sender asked to be told (RFC 3461)


@dataclass(frozen=True)
class DestinationSummary:
    """What `ygbridge status` shows for one destination node."""

    destination: str
    recipients: int
    next_attempt: float
    last_error: str | None


def enqueue(
    sender: str,
    body: bytes,
    message_id: str | None,
    recipients: list[tuple[str, str]],
    now: float,
    dsn: DsnRequest = NO_REQUEST,
) -> list[tuple[str, QueuedMessage]]:
    """Store a message for (recipient, destination address) pairs with the sender's DSN request;
    returns it as each destination's queue holds it, so that it can be tried at once without
    reading it back."""
    grouped: dict[str, list[tuple[int, str, str | None, str | None]]] = {}
    with database.atomic():
        queue_id = sql.insert(
            _INSERT_MESSAGE,
            (sender, OutgoingMessage.body.db_value(body), message_id, now, dsn.ret, dsn.envid),
        )
        for recipient, destination in recipients:
            notify = dsn.notify(recipient)
            events, orcpt = encode_events(notify), notify.orcpt
            row_id = sql.insert(
                _INSERT_RECIPIENT, (queue_id, recipient, destination, now, False, events, orcpt)
            )
            grouped.setdefault(destination, []).append((row_id, recipient, events, orcpt))
    return [
        (
            destination,
            QueuedMessage(
                id=queue_id,
                sender=sender,
                body=body,
                message_id=message_id,
                created=now,
                recipients=tuple((row_id, recipient) for row_id, recipient, _, _ in rows),
                attempts=0,
                last_error=None,
                warned=False,
                dsn=DsnRequest(
                    ret=dsn.ret,
                    envid=dsn.envid,
                    recipients={
                        recipient: Notify(decode_events(events), orcpt)
                        for _, recipient, events, orcpt in rows
                        if events or orcpt
                    },
                ),
            ),
        )
        for destination, rows in grouped.items()
    ]


def due_destinations(now: float) -> list[str]:
    """Destinations with at least one recipient due for an attempt."""
    query = (
        OutgoingRecipient.select(OutgoingRecipient.destination)
        .where(OutgoingRecipient.next_attempt <= now)
        .distinct()
    )
    return [row.destination for row in query]


def next_due(destination: str, now: float, force: bool = False) -> QueuedMessage | None:
    """The oldest message with recipients due on ``destination`` (any due one when forced)."""
    return next(iter(due_messages(destination, now, force)), None)


def due_messages(
    destination: str, now: float, force: bool = False, exclude: Collection[int] = (), limit: int = 1
) -> list[QueuedMessage]:
    """Up to ``limit`` oldest messages with recipients due on ``destination`` (any queued one
    when forced), except those in ``exclude`` (queue ids of attempts in flight)."""
    where = OutgoingRecipient.destination == destination
    if not force:
        where &= OutgoingRecipient.next_attempt <= now
    if exclude:
        where &= OutgoingRecipient.message.not_in(list(exclude))
    ids = [
        row.message_id
        for row in OutgoingRecipient.select(OutgoingRecipient.message)
        .where(where)
        .group_by(OutgoingRecipient.message)
        .order_by(OutgoingRecipient.message)
        .limit(limit)
    ]
    if not ids:
        return []
    rows = (
        OutgoingRecipient.select(OutgoingRecipient, OutgoingMessage)
        .join(OutgoingMessage)
        .where(where & OutgoingRecipient.message.in_(ids))
        .order_by(OutgoingRecipient.id)
    )
    grouped: dict[int, list[OutgoingRecipient]] = {}
    for row in rows:
        grouped.setdefault(row.message_id, []).append(row)
    return [_queued(grouped[i]) for i in ids]


def _queued(rows: list[OutgoingRecipient]) -> QueuedMessage:
    """The queue entry of ``rows`` (recipients of one message, joined with it)."""
    message = rows[0].message
    return QueuedMessage(
        id=message.id,
        sender=message.sender,
        body=bytes(message.body),
        message_id=message.message_id,
        created=message.created,
        recipients=tuple((row.id, row.recipient) for row in rows),
        attempts=max(row.attempts for row in rows),
        last_error=next((row.last_error for row in rows if row.last_error), None),
        warned=all(row.warned for row in rows),
        dsn=DsnRequest(
            ret=message.ret,
            envid=message.envid,
            recipients={
                row.recipient: Notify(decode_events(row.notify), row.orcpt)
                for row in rows
                if row.notify or row.orcpt
            },
        ),
    )


def remove(message_id: int, recipient_ids: list[int]) -> None:
    """Forget recipients that are done (delivered or finally failed)."""
    with database.atomic():
        sql.execute(f'DELETE FROM "outgoing_recipient" WHERE "id" IN {sql.int_list(recipient_ids)}')
        if not sql.exists('SELECT 1 FROM "outgoing_recipient" WHERE "message_id" = ?', (message_id,)):
            sql.execute('DELETE FROM "outgoing_message" WHERE "id" = ?', (message_id,))


def postpone(recipient_ids: list[int], error: str, next_attempt: float) -> None:
    """Record a failed attempt and when to try again."""
    OutgoingRecipient.update(
        attempts=OutgoingRecipient.attempts + 1, last_error=error, next_attempt=next_attempt
    ).where(OutgoingRecipient.id.in_(recipient_ids)).execute()


def mark_warned(recipient_ids: list[int]) -> None:
    """Record that the sender was told these recipients are delayed."""
    OutgoingRecipient.update(warned=True).where(OutgoingRecipient.id.in_(recipient_ids)).execute()


def summary() -> list[DestinationSummary]:
    """Per destination: queued recipients, the next attempt and an error recorded for it."""
    rows = dicts(
        OutgoingRecipient.select(
            OutgoingRecipient.destination,
            peewee.fn.COUNT(OutgoingRecipient.id).alias("count"),
            peewee.fn.MIN(OutgoingRecipient.next_attempt).alias("next_attempt"),
            peewee.fn.MAX(OutgoingRecipient.last_error).alias("last_error"),
        )
        .group_by(OutgoingRecipient.destination)
        .order_by(OutgoingRecipient.destination)
    )
    return [
        DestinationSummary(r["destination"], r["count"], r["next_attempt"], r["last_error"]) for r in rows
    ]
