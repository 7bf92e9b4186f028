"""Commands of the authenticated state (RFC 3501 6.3) over the logged-in ImapAccount.

SELECT and EXAMINE read the mailbox from the store (a UID array, not the messages); STATUS
counts in SQL; APPEND answers with APPENDUID (RFC 4315).
"""

from __future__ import annotations

from typing import Any

from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server, collapseNestedLists

from ygbridge.imap.base import CommandServer, flag_names, mailbox_name
from ygbridge.imap.dates import parse_date_time
from ygbridge.store.flags import SYSTEM_FLAGS
from ygbridge.store.mailboxes import DELIMITER


def _quoted(name: str) -> bytes:
    return collapseNestedLists([name.encode("imap4-utf-7")])


class AccountCommands(CommandServer):
    """SELECT, EXAMINE, STATUS, APPEND, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, NAMESPACE."""

    def _select(self, tag: bytes, name: bytes, writeable: int, command: bytes) -> None:
        self._close_mailbox()  # even if the new one cannot be opened (RFC 3501 6.3.1)
        self._run(tag, self._open(mailbox_name(name), bool(writeable), command))

    auth_SELECT = select_SELECT = (_select, CommandServer.arg_astring, 1, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (_select, CommandServer.arg_astring, 0, b"EXAMINE")

    async def _open(self, name: str, writeable: bool, command: bytes) -> bytes:
        assert self.account is not None
        view, contents = await self.account.select(name, writeable, self._changes_arrived)
        if self._gone:
            view.close()
            return b""
        self.mbox, self.state = view, "select"
        flags = " ".join([*SYSTEM_FLAGS, *sorted(contents.keywords)]).encode("utf-8")
        self.sendUntaggedResponse(b"FLAGS (%b)" % flags)
        self.sendUntaggedResponse(b"%d EXISTS" % len(view.seqs))
        self.sendUntaggedResponse(b"0 RECENT")
        first_unseen = None if contents.first_unseen is None else view.seqs.seq(contents.first_unseen)
        if first_unseen is not None:
            self.sendPositiveResponse(None, b"[UNSEEN %d] First unseen" % first_unseen)
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % contents.uidvalidity)
        self.sendPositiveResponse(None, b"[UIDNEXT %d] Predicted next UID" % contents.uidnext)
        permanent = flags + b" \\*" if writeable else b""
        self.sendPositiveResponse(None, b"[PERMANENTFLAGS (%b)] Limited" % permanent)
        mode = b"[READ-WRITE]" if writeable else b"[READ-ONLY]"
        return mode + b" " + command + b" completed"

    def do_STATUS(self, tag: bytes, name: bytes, items: list[bytes]) -> None:
        self._run(tag, self._status(mailbox_name(name), [item.upper() for item in items]))

    auth_STATUS = select_STATUS = (do_STATUS, CommandServer.arg_astring, IMAP4Server.arg_plist)

    async def _status(self, name: str, items: list[bytes]) -> bytes:
        assert self.account is not None
        counts = await self.account.status(name)
        values = {
            b"MESSAGES": counts.messages,
            b"RECENT": 0,
            b"UIDNEXT": counts.uidnext,
            b"UIDVALIDITY": counts.uidvalidity,
            b"UNSEEN": counts.unseen,
        }
        unknown = [item for item in items if item not in values]
        if unknown:
            raise IllegalClientResponse(f"unknown STATUS items {unknown}")
        answer = b" ".join(b"%b %d" % (item, values[item]) for item in items)
        self.sendUntaggedResponse(b"STATUS %b (%b)" % (_quoted(name), answer))
        return b"STATUS completed"

    def do_APPEND(
        self, tag: bytes, mailbox: bytes, flags: list[bytes] | None, date: bytes | None, message: Any
    ) -> None:
        try:
            when = None if date is None else parse_date_time(date)
        except ValueError as exc:
            raise IllegalClientResponse(str(exc)) from None
        names = flag_names(flags or [])
        self._run(tag, self._append(mailbox_name(mailbox), message.read(), names, when), trycreate=True)

    auth_APPEND = select_APPEND = (
        do_APPEND,
        CommandServer.arg_astring,
        IMAP4Server.opt_plist,
        IMAP4Server.opt_datetime,
        CommandServer.arg_literal,
    )

    async def _append(self, name: str, body: bytes, flags: list[str], when: float | None) -> bytes:
        assert self.account is not None
        added = await self.account.append(name, body, flags, when)
        return b"[APPENDUID %d %d] APPEND completed" % (added.uidvalidity, added.uid)

    # Mailbox management

    def do_CREATE(self, tag: bytes, name: bytes) -> None:
        assert self.account is not None
        self._run(tag, self._done(self.account.create(mailbox_name(name)), b"CREATE completed"))

    def do_DELETE(self, tag: bytes, name: bytes) -> None:
        assert self.account is not None
        self._run(tag, self._done(self.account.delete(mailbox_name(name)), b"DELETE completed"))

    def do_RENAME(self, tag: bytes, old: bytes, new: bytes) -> None:
        assert self.account is not None
        renamed = self.account.rename(mailbox_name(old), mailbox_name(new))
        self._run(tag, self._done(renamed, b"RENAME completed"))

    def do_SUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        assert self.account is not None
        subscribed = self.account.subscribe(mailbox_name(name), True)
        self._run(tag, self._done(subscribed, b"SUBSCRIBE completed"))

    def do_UNSUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        assert self.account is not None
        unsubscribed = self.account.subscribe(mailbox_name(name), False)
        self._run(tag, self._done(unsubscribed, b"UNSUBSCRIBE completed"))

    auth_CREATE = select_CREATE = (do_CREATE, IMAP4Server.arg_finalastring)
    auth_DELETE = select_DELETE = (do_DELETE, IMAP4Server.arg_finalastring)
    auth_RENAME = select_RENAME = (do_RENAME, CommandServer.arg_astring, IMAP4Server.arg_finalastring)
    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, IMAP4Server.arg_finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, IMAP4Server.arg_finalastring)

    def do_NAMESPACE(self, tag: bytes) -> None:
        """One personal namespace, no shared or other users' ones (RFC 2342)."""
        self.sendUntaggedResponse(b'NAMESPACE (("" "%b")) NIL NIL' % DELIMITER.encode("ascii"))
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)
