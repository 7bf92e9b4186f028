"""Large blocks go back to the system: glibc's mmap threshold is fixed where glibc is the C library."""

import ctypes
import ctypes.util
import platform

import pytest

from ygbridge.memory import return_large_blocks


def test_the_threshold_is_fixed_under_glibc() -> None:
    assert return_large_blocks() is (platform.libc_ver()[0] == "glibc")


def test_without_a_c_library_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert return_large_blocks() is False


@pytest.mark.parametrize("error", [OSError("cannot load"), AttributeError("no mallopt")])
def test_a_c_library_without_mallopt_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def cdll(name: str) -> object:
        raise error

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc-of-another-kind.so")
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert return_large_blocks() is False
