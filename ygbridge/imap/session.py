"""The mailbox an IMAP session has selected: its sequence numbers and what it has yet to report.

Changes made by other sessions (and deliveries) arrive through the MailHub at any time; they
are held here and reported as untagged responses only where RFC 3501 allows it (section 7.4.1:
no EXPUNGE outside a command, nor during FETCH, STORE or SEARCH), so the session's sequence
numbers change only when the client is told.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence

from ygbridge.imap.fetch import flags_list
from ygbridge.imap.sequence import SequenceMap
from ygbridge.mailhub import MailboxState
from ygbridge.store.search import UidRanges


class RecentUids:
    """The UIDs that are \\Recent in one session (RFC 3501 2.3.2): ascending inclusive ranges."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def add(self, low: int, high: int) -> None:
        """Mark UIDs ``low`` to ``high`` as \\Recent in this session (they arrive in ascending order)."""
        if self.ranges and low <= self.ranges[-1][1] + 1:
            self.ranges[-1] = (self.ranges[-1][0], max(high, self.ranges[-1][1]))
        else:
            self.ranges.append((low, high))

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        at = bisect_right(self.ranges, (uid, float("inf"))) - 1
        return at >= 0 and self.ranges[at][0] <= uid <= self.ranges[at][1]

    def count(self, seqs: SequenceMap) -> int:
        """How many of the messages ``seqs`` numbers are recent."""
        return sum(seqs.count_between(low, high) for low, high in self.ranges)

    def term(self) -> UidRanges:
        """The search term of these UIDs (SEARCH RECENT)."""
        return UidRanges(tuple(self.ranges))


class SelectedMailbox:
    """One session's view of a mailbox; a watcher of its MailboxState until :meth:`close`.

    ``on_change`` is called whenever a change arrives (so an IDLE session can report it at once).
    ``recent`` are the messages this session was first to see (read-write sessions only).
    """

    def __init__(
        self,
        box: MailboxState,
        uids: array[int],
        claimed: tuple[int, int] | None,
        writeable: bool,
        on_change: Callable[[], None],
    ) -> None:
        self.box = box
        self.writeable = writeable
        self.seqs = SequenceMap(uids)
        self.recent = RecentUids()
        if claimed is not None:
            self.recent.add(*claimed)
        self._on_change = on_change
        self._added: list[int] = []
        self._recent_changed = False
        self._expunged: set[int] = set()
        self._flags: dict[int, frozenset[str]] = {}
        box.watchers[self] = None

    def close(self) -> None:
        """Stop watching the mailbox."""
        self.box.watchers.pop(self, None)

    def flags(self, uid: int, flags: frozenset[str]) -> frozenset[str]:
        """A message's flags as this session shows them: with ``\\Recent`` if it is recent here."""
        return flags | {"\\Recent"} if uid in self.recent else flags

    # MailboxWatcher

    def messages_added(self, uids: Sequence[int], recent: bool) -> None:
        self._added.extend(uids)
        if recent:
            for uid in sorted(uids):
                self.recent.add(uid, uid)
            self._recent_changed = True
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
        if self._recent_changed:
            lines.append(b"%d RECENT" % self.recent.count(self.seqs))
            self._recent_changed = False
        for uid, flags in sorted(self._flags.items()):
            seq = self.seqs.seq(uid)
            if seq is not None and uid not in self._expunged:
                lines.append(b"%d FETCH (FLAGS %b UID %d)" % (seq, flags_list(self.flags(uid, flags)), uid))
        self._flags.clear()
        return lines
