"""Message flags as the store keeps them: system flags as bits of one column, keywords as text."""

from __future__ import annotations

from collections.abc import Iterable

#: The flags a client can set besides its own keywords (RFC 3501 2.3.2), in bit order.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_BITS = {flag: 1 << number for number, flag in enumerate(SYSTEM_FLAGS)}
_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Flags with system flags spelt canonically; other ``\\`` flags (like ``\\Recent``) dropped."""
    canonical = (_CANONICAL.get(flag.lower(), flag) for flag in flags)
    return frozenset(flag for flag in canonical if flag in _BITS or not flag.startswith("\\"))


def flag_bit(flag: str) -> int:
    """The bit of a system flag in the ``system_flags`` column."""
    return _BITS[flag]


def pack_flags(flags: Iterable[str]) -> tuple[int, str]:
    """(system flag bits, space-separated sorted keywords) of normalized flags."""
    flags = set(flags)
    bits = sum(bit for flag, bit in _BITS.items() if flag in flags)
    return bits, " ".join(sorted(flags.difference(_BITS)))


def unpack_flags(bits: int, keywords: str) -> frozenset[str]:
    """The flags of a stored message."""
    return frozenset([*(flag for flag, bit in _BITS.items() if bits & bit), *keywords.split()])
