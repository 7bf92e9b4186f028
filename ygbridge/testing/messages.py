"""Generated mailboxes: numbered, distinct, realistic messages, and an INBOX filled with them."""

from __future__ import annotations

from ygbridge.store.messages import add_message
from ygbridge.store.models import database
from ygbridge.store.users import add_user

#: The creation time of the generated user; message ``n`` arrived ``n`` minutes later.
START = 1_700_000_000.0


def numbered_message(n: int) -> bytes:
    """Message ``n``: one of 97 senders, one of 13 topics, a day of November 2023, about 1 kB."""
    day = 1 + n % 28
    return (
        f"From: Sender {n % 97} <sender{n % 97}@example.meship>\r\n"
        f"To: alice@node.meship\r\n"
        f"Subject: Message number {n} about topic {n % 13}\r\n"
        f"Date: Tue, {day} Nov 2023 10:00:00 +0000\r\n"
        f"Message-ID: <{n}@example.meship>\r\n"
        f"\r\n"
        f"Hello, this is the body of message {n}.\r\n" + "Some more text to make it realistic.\r\n" * 20
    ).encode()


def fill_inbox(count: int) -> None:
    """Create user alice and store messages 0 to ``count - 1`` in her INBOX (2 in 3 of them
    ``\\Seen``), in one transaction on the current database, on this thread."""
    with database.atomic():
        add_user("alice", b"unused", START)
        for n in range(count):
            flags = ["\\Seen"] if n % 3 else []
            add_message(
                "alice",
                "INBOX",
                numbered_message(n),
                flags=flags,
                internaldate=START + n * 60,
                message_id=None,
                sender_node=None,
            )
