"""Giving memory back: large blocks (a 32 MiB message and its copies) go back to the system when freed.

glibc's malloc serves a block of at least ``M_MMAP_THRESHOLD`` octets with its own mapping,
returned to the system on free; but it raises that threshold to the size of each such block freed
(up to 32 MiB), so after one large message its copies come from the heap and the arenas of the
threads that made them, and the process keeps them: one 32 MiB message left a bridge about 70 MiB
larger. A fixed threshold turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: mallopt's parameter number for the threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3

#: Blocks from this size on get their own mapping (the spool keeps a message's first MiB in memory).
LARGE_BLOCK = 1024 * 1024


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold at :data:`LARGE_BLOCK`; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))
