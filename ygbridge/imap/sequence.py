"""Message sequence numbers of one IMAP session (RFC 3501 2.3.1.2) over a compact UID array.

A session numbers the messages it has been told about: 8 bytes per message, whatever their
size, and nothing else about them is kept in memory.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator

from ygbridge.imap.wire import SequenceSet


def uid_set(uids: Iterable[int]) -> bytes:
    """An IMAP sequence set for ascending UIDs, runs collapsed (``1:3,7``)."""
    runs: list[list[int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return b",".join(b"%d" % low if low == high else b"%d:%d" % (low, high) for low, high in runs)


def _merged(spans: list[range]) -> list[range]:
    merged: list[range] = []
    for span in sorted(spans, key=lambda span: span.start):
        if merged and span.start <= merged[-1].stop:
            merged[-1] = range(merged[-1].start, max(merged[-1].stop, span.stop))
        else:
            merged.append(span)
    return merged


class SequenceMap:
    """Sequence number ``n`` is the message with UID ``uids[n - 1]``; UIDs ascend."""

    def __init__(self, uids: array[int]) -> None:
        self._uids = uids

    def __len__(self) -> int:
        return len(self._uids)

    @property
    def last_uid(self) -> int:
        """The highest UID numbered (0 when there are none): ``*`` in a UID set."""
        return self._uids[-1] if self._uids else 0

    def uid(self, seq: int) -> int:
        """The UID of message sequence number ``seq`` (1-based)."""
        return self._uids[seq - 1]

    def seq(self, uid: int) -> int | None:
        """The sequence number of a UID, or None if this session does not number it."""
        index = bisect_left(self._uids, uid)
        return index + 1 if index < len(self._uids) and self._uids[index] == uid else None

    def count_between(self, low: int, high: int) -> int:
        """How many numbered UIDs lie in ``low``..``high``."""
        return max(0, bisect_right(self._uids, high) - bisect_left(self._uids, low))

    def spans(self, ids: SequenceSet, uid: bool) -> list[range]:
        """The zero-based positions a sequence set (or UID set) names, as ascending disjoint ranges.

        ``*`` is the last message; ``n:*`` with n past the end still names the last one.
        """
        last = self.last_uid if uid else len(self._uids)
        spans = []
        for low, high in ids.ranges:
            low, high = sorted((last if low is None else low, last if high is None else high))
            if uid:
                span = range(bisect_left(self._uids, low), bisect_right(self._uids, high))
            else:
                span = range(max(low, 1) - 1, min(high, len(self._uids)))
            if span:
                spans.append(span)
        return _merged(spans)

    def uids(self, span: range) -> array[int]:
        """The UIDs at these positions."""
        return self._uids[span.start : span.stop]

    def batches(self, spans: Iterable[range], size: int) -> Iterator[array[int]]:
        """The UIDs at these positions, at most ``size`` at a time, in order."""
        for span in spans:
            for start in range(span.start, span.stop, size):
                yield self._uids[start : min(span.stop, start + size)]

    def uid_ranges(self, spans: Iterable[range]) -> tuple[tuple[int, int], ...]:
        """Inclusive (low, high) UID bounds of each span."""
        return tuple((self._uids[span.start], self._uids[span.stop - 1]) for span in spans)

    def add(self, uids: Iterable[int]) -> None:
        """Number new messages (UIDs above every numbered one) after the last."""
        for uid in sorted(uids):
            if uid > self.last_uid:
                self._uids.append(uid)

    def remove(self, uids: Collection[int]) -> list[int]:
        """Forget expunged messages; returns the EXPUNGE numbers to send, in order (RFC 3501 7.4.1)."""
        kept = array("Q")
        numbers: list[int] = []
        for index, uid in enumerate(self._uids):
            if uid in uids:
                numbers.append(index + 1 - len(numbers))
            else:
                kept.append(uid)
        self._uids = kept
        return numbers
