"""Large blocks go back to the system: glibc's mmap threshold is fixed where glibc is the C library."""

import platform

from ygbridge.memory import return_large_blocks


def test_the_threshold_is_fixed_under_glibc() -> None:
    assert return_large_blocks() is (platform.libc_ver()[0] == "glibc")
