"""Peewee models: users, mailboxes, messages and the outgoing queue.

Times are POSIX seconds (floats) taken from an injected clock, never from the database.
Message bodies are raw bytes exactly as received.
"""

from __future__ import annotations

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


class Mailbox(BaseModel):
    """An IMAP mailbox; ``uidnext`` only grows, ``uidvalidity`` never changes."""

    user = peewee.ForeignKeyField(User, backref="mailboxes", on_delete="CASCADE")
    name = peewee.CharField(max_length=255)
    uidvalidity = peewee.BigIntegerField()
    uidnext = peewee.BigIntegerField(default=1)
    subscribed = peewee.BooleanField(default=True)
    special_use = peewee.CharField(max_length=16, null=True)

    class Meta:
        indexes = ((("user", "name"), True),)


class Message(BaseModel):
    """A stored message: raw bytes, flags (space separated), UID and arrival time."""

    mailbox = peewee.ForeignKeyField(Mailbox, backref="messages", on_delete="CASCADE")
    uid = peewee.BigIntegerField()
    flags = peewee.TextField(default="")
    internaldate = peewee.FloatField()
    size = peewee.IntegerField()
    body = peewee.BlobField()
    message_id = peewee.CharField(max_length=998, null=True)
    sender_node = peewee.CharField(max_length=64, null=True)

    class Meta:
        indexes = (
            (("mailbox", "uid"), True),
            (("mailbox", "sender_node", "message_id"), False),
        )


class OutgoingMessage(BaseModel):
    """A message accepted for delivery to other nodes; kept until every recipient is done."""

    sender = peewee.CharField(max_length=998)
    body = peewee.BlobField()
    message_id = peewee.CharField(max_length=998, null=True)
    created = peewee.FloatField()


class OutgoingRecipient(BaseModel):
    """One recipient of an outgoing message, on destination node ``destination``."""

    message = peewee.ForeignKeyField(OutgoingMessage, backref="recipients", on_delete="CASCADE")
    recipient = peewee.CharField(max_length=998)
    destination = peewee.CharField(max_length=64, index=True)
    attempts = peewee.IntegerField(default=0)
    next_attempt = peewee.FloatField(index=True)
    last_error = peewee.TextField(null=True)


class NodeRecord(BaseModel):
    """The router identity this node served mail for, to notice when the router's key changes."""

    key = peewee.CharField(max_length=64)
    address = peewee.CharField(max_length=64)
    seen = peewee.FloatField()


MODELS = [SchemaVersion, User, Mailbox, Message, OutgoingMessage, OutgoingRecipient, NodeRecord]
SCHEMA_VERSION = 1
