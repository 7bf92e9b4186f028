"""The UIDs and flags of a mailbox's messages, compact enough to keep in memory.

What the MailHub keeps of a mailbox while its user has sessions, so that SELECT and a FETCH of
flags need not read the mailbox again. 9 bytes a message (an 8-byte UID and a byte of system
flag bits, store.flags), plus a dict entry (some 30 to 100 bytes) for each message that has
keywords (most have none).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import NamedTuple

#: A message's flags as the store keeps them: (system flag bits, space-separated keywords).
Packed = tuple[int, str]


class Columns(NamedTuple):
    """Some messages of a listing, a column each: UIDs, system flag bits, and the keywords of
    those that have some, by position."""

    uids: Sequence[int]
    bits: bytes | bytearray
    keywords: dict[int, str]


class UidFlags:
    """Every message of a mailbox by ascending UID, with its flags (packed, store.flags)."""

    def __init__(self, rows: Iterable[tuple[int, int, str]] = ()) -> None:
        """From (uid, system flag bits, keywords) rows in ascending UID order."""
        self._uids = array("Q")
        self._bits = bytearray()
        self._keywords: dict[int, str] = {}
        shared: dict[str, str] = {}  # one string for messages with the same keywords
        for uid, bits, keywords in rows:
            self._uids.append(uid)
            self._bits.append(bits)
            if keywords:
                self._keywords[uid] = shared.setdefault(keywords, keywords)

    def __len__(self) -> int:
        return len(self._uids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._uids)

    def uids(self) -> array[int]:
        """A copy of the UIDs (a session's own, to number them)."""
        return array("Q", self._uids)

    def flags(self, uid: int) -> Packed | None:
        """The flags of one message; None if it is not there."""
        at = bisect_left(self._uids, uid)
        if at == len(self._uids) or self._uids[at] != uid:
            return None
        return self._bits[at], self._keywords.get(uid, "")

    def columns(self, uids: Sequence[int]) -> Columns:
        """Those of ``uids`` (ascending) still here, in order, and their flags."""
        low = bisect_left(self._uids, uids[0]) if uids else 0
        high = bisect_right(self._uids, uids[-1]) if uids else 0
        if high - low == len(uids):
            # No UID between the first and the last is missing from ``uids`` (new UIDs come
            # after every old one), so the same count means the same messages.
            found, bits = uids, self._bits[low:high]
        else:  # some are gone: the caller has not heard yet
            places = [bisect_left(self._uids, uid) for uid in uids]
            kept = [at for at, uid in zip(places, uids, strict=True) if at < high and self._uids[at] == uid]
            found, bits = [self._uids[at] for at in kept], bytearray([self._bits[at] for at in kept])
        keywords: dict[int, str] = {}
        if self._keywords:
            for at, uid in enumerate(found):
                if uid in self._keywords:
                    keywords[at] = self._keywords[uid]
        return Columns(found, bits, keywords)

    def add(self, uids: Sequence[int], flags: Sequence[Packed]) -> None:
        """New messages, ``flags[n]`` those of ``uids[n]``; any not above the last are ignored
        (already here: a read of the mailbox saw them)."""
        for uid, (bits, keywords) in sorted(zip(uids, flags, strict=True)):
            if not self._uids or uid > self._uids[-1]:
                self._uids.append(uid)
                self._bits.append(bits)
                if keywords:
                    self._keywords[uid] = keywords

    def set_flags(self, uid: int, bits: int, keywords: str) -> None:
        """A message's flags changed (nothing if it is not here)."""
        at = bisect_left(self._uids, uid)
        if at < len(self._uids) and self._uids[at] == uid:
            self._bits[at] = bits
            if keywords:
                self._keywords[uid] = keywords
            else:
                self._keywords.pop(uid, None)

    def remove(self, uids: Collection[int]) -> None:
        """Messages expunged or moved away."""
        kept = [at for at, uid in enumerate(self._uids) if uid not in uids]
        if len(kept) == len(self._uids):
            return
        self._uids = array("Q", [self._uids[at] for at in kept])
        self._bits = bytearray([self._bits[at] for at in kept])
        for uid in uids:
            self._keywords.pop(uid, None)
