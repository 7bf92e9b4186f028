"""Peewee models: users, mailboxes, messages and the outgoing queue.

Times are POSIX seconds (floats) taken from an injected clock, never from the database.
Message bodies are raw bytes exactly as received.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import peewee

database = peewee.DatabaseProxy()

#: Mailboxes every user has, with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES = {
    "INBOX": None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}


class BaseModel(peewee.Model):
    """The models' common base: the deferred database, snake_case table names."""

    id = peewee.AutoField()  # what peewee adds when a model declares no primary key, made visible

    class Meta:
        database = database
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """One row: the schema version the database was last migrated to."""

    version = peewee.IntegerField()


class User(BaseModel):
    """A mail account on this node; ``name`` is the lowercase local part."""

    name = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.BlobField()
    created = peewee.FloatField()
    last_uidvalidity = peewee.BigIntegerField(default=0)  # the UIDVALIDITY last given to a new mailbox


class Mailbox(BaseModel):
    """An IMAP mailbox; ``uidnext`` only grows, ``uidvalidity`` never changes.

    ``total`` and ``unseen`` count its messages (and those without ``\\Seen``), kept in the
    transaction of every change; messages from UID ``recent_from`` on are \\Recent and not yet
    claimed by a session (RFC 3501 2.3.2).
    """

    user = peewee.ForeignKeyField(User, backref="mailboxes", on_delete="CASCADE")
    name = peewee.CharField(max_length=255)
    uidvalidity = peewee.BigIntegerField()
    uidnext = peewee.BigIntegerField(default=1)
    subscribed = peewee.BooleanField(default=False)
    special_use = peewee.CharField(max_length=16, null=True)
    total = peewee.IntegerField(default=0)
    unseen = peewee.IntegerField(default=0)
    recent_from = peewee.BigIntegerField(default=1)

    class Meta:
        indexes = ((("user", "name"), True),)


class Message(BaseModel):
    """A stored message: raw bytes, UID, flags, arrival time, and what SEARCH compares.

    ``system_flags`` holds the system flags as bits (store.flags), ``keywords`` the other flags
    space separated; ``header_size`` is where the body starts, ``sent_date`` the day of its Date.
    """

    mailbox = peewee.ForeignKeyField(Mailbox, backref="messages", on_delete="CASCADE")
    uid = peewee.BigIntegerField()
    system_flags = peewee.IntegerField(default=0)
    keywords = peewee.TextField(default="")
    internaldate = peewee.FloatField()
    size = peewee.IntegerField()
    body = peewee.BlobField()
    header_size = peewee.IntegerField(default=0)
    sent_date = peewee.DateField(null=True)
    message_id = peewee.CharField(max_length=998, null=True)
    sender_node = peewee.CharField(max_length=64, null=True)

    class Meta:
        indexes = (
            (("mailbox", "uid"), True),
            (("mailbox", "sender_node", "message_id"), False),
        )


#: The flags of a range of UIDs without reading the messages (FETCH FLAGS).
Message.add_index(
    peewee.SQL(
        'CREATE INDEX IF NOT EXISTS "message_flags" ON "message" '
        '("mailbox_id", "uid", "system_flags", "keywords")'
    )
)
#: Partial indexes: the unseen messages of a mailbox (\\Seen is bit 8, store.flags), for UNSEEN and
#: SELECT; the messages with keywords, for the keywords in use that SELECT shows.
Message.add_index(
    peewee.SQL(
        'CREATE INDEX IF NOT EXISTS "message_unseen" ON "message" ("mailbox_id", "uid") '
        'WHERE ("system_flags" & 8) = 0'
    )
)
Message.add_index(
    peewee.SQL(
        'CREATE INDEX IF NOT EXISTS "message_keywords" ON "message" ("mailbox_id", "keywords") '
        "WHERE \"keywords\" <> ''"
    )
)


class HeaderField(BaseModel):
    """One header field of a message, decoded and case-folded (store.indexing), for SEARCH."""

    message = peewee.ForeignKeyField(Message, backref="header_fields", on_delete="CASCADE")
    name = peewee.CharField(max_length=255)
    value = peewee.TextField()


class OutgoingMessage(BaseModel):
    """A message accepted for delivery to other nodes; kept until every recipient is done."""

    sender = peewee.CharField(max_length=998)
    body = peewee.BlobField()
    message_id = peewee.CharField(max_length=998, null=True)
    created = peewee.FloatField()
    ret = peewee.CharField(max_length=4, null=True)  # RFC 3461 RET: FULL or HDRS
    envid = peewee.CharField(max_length=100, null=True)  # RFC 3461 ENVID (decoded)


class OutgoingRecipient(BaseModel):
    """One recipient of an outgoing message, on destination node ``destination``."""

    message = peewee.ForeignKeyField(OutgoingMessage, backref="recipients", on_delete="CASCADE")
    message_id: int  # peewee's accessor for the foreign key's value (no query)
    recipient = peewee.CharField(max_length=998)
    destination = peewee.CharField(max_length=64, index=True)
    attempts = peewee.IntegerField(default=0)
    next_attempt = peewee.FloatField(index=True)
    last_error = peewee.TextField(null=True)
    warned = peewee.BooleanField(default=False)  # the sender has been told it is delayed
    notify = peewee.CharField(max_length=40, null=True)  # RFC 3461 NOTIFY, comma-separated; None: not given
    orcpt = peewee.CharField(max_length=998, null=True)  # RFC 3461 ORCPT (decoded)


class NodeRecord(BaseModel):
    """The router identity this node served mail for, to notice when the router's key changes."""

    key = peewee.CharField(max_length=64)
    address = peewee.CharField(max_length=64)
    seen = peewee.FloatField()


def tuples(query: peewee.ModelSelect[Any]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` as tuples (peewee's stubs have ``tuples()`` still yield models)."""
    return iter(cast(Iterator[tuple[Any, ...]], query.tuples()))


def dicts(query: peewee.ModelSelect[Any]) -> Iterator[dict[str, Any]]:
    """The rows of ``query`` as dicts (peewee's stubs have ``dicts()`` still yield models)."""
    return iter(cast(Iterator[dict[str, Any]], query.dicts()))


MODELS = [SchemaVersion, User, Mailbox, Message, HeaderField, OutgoingMessage, OutgoingRecipient, NodeRecord]
SCHEMA_VERSION = 6
