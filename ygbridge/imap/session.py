"""The mailbox an IMAP session has selected: its sequence numbers and what it has yet to report.

Changes made by other sessions (and deliveries) arrive through the Mailstore at any time; they
are held here and reported as untagged responses only where RFC 3501 allows it (section 7.4.1:
no EXPUNGE outside a command, nor during FETCH, STORE or SEARCH), so the session's sequence
numbers change only when the client is told.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from ygbridge.imap.fetch import flags_list
from ygbridge.imap.sequence import SequenceMap
from ygbridge.mailstore import MailboxState
from ygbridge.store.messages import Contents


class SelectedMailbox:
    """One session's view of a mailbox; a watcher of its MailboxState until :meth:`close`.

    ``on_change`` is called whenever a change arrives (so an IDLE session can report it at once).
    """

    def __init__(
        self, box: MailboxState, contents: Contents, writeable: bool, on_change: Callable[[], None]
    ) -> None:
        self.box = box
        self.writeable = writeable
        self.seqs = SequenceMap(contents.uids)
        self._on_change = on_change
        self._added: list[int] = []
        self._expunged: set[int] = set()
        self._flags: dict[int, frozenset[str]] = {}
        box.watchers.add(self)

    def close(self) -> None:
        """Stop watching the mailbox."""
        self.box.watchers.discard(self)

    # MailboxWatcher

    def messages_added(self, uids: Sequence[int]) -> None:
        self._added.extend(uids)
        self._on_change()

    def flags_changed(self, flags: Mapping[int, frozenset[str]]) -> None:
        self._flags.update(flags)
        self._on_change()

    def messages_expunged(self, uids: Sequence[int]) -> None:
        self.expunged_here(uids)
        self._on_change()

    def expunged_here(self, uids: Iterable[int]) -> None:
        """Messages this session expunged or moved away itself: reported like the others."""
        self._expunged.update(uids)

    def updates(self, expunge: bool) -> list[bytes]:
        """Untagged responses for the changes not reported yet (EXPUNGE only if ``expunge``)."""
        lines = []
        if expunge and self._expunged:
            lines += [b"%d EXPUNGE" % number for number in self.seqs.remove(self._expunged)]
            self._expunged.clear()
        if self._added:
            count = len(self.seqs)
            self.seqs.add(self._added)
            self._added.clear()
            if len(self.seqs) != count:
                lines.append(b"%d EXISTS" % len(self.seqs))
        for uid, flags in sorted(self._flags.items()):
            seq = self.seqs.seq(uid)
            if seq is not None and uid not in self._expunged:
                lines.append(b"%d FETCH (FLAGS %b UID %d)" % (seq, flags_list(flags), uid))
        self._flags.clear()
        return lines
