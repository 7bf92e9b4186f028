"""Hourly mesh quotas (leaky buckets on an injected clock) and the free-disk floor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from smtpsession import free
from twisted.internet.task import Clock

from ygbridge.errors import InsufficientStorage, QuotaExceeded
from ygbridge.quota import DiskFloor, HourlyQuota


def test_a_burst_up_to_the_limit_then_the_allowance_returns_evenly() -> None:
    clock = Clock()
    quota = HourlyQuota(clock, messages_per_hour=4, bytes_per_hour=10_000)
    for _ in range(4):
        quota.check("200::1")
        quota.record("200::1", 10)
    with pytest.raises(QuotaExceeded, match="4 messages per hour"):
        quota.check("200::1")
    quota.check("200::2")  # another node has its own allowance
    clock.advance(900)  # a quarter of an hour: one message
    quota.check("200::1")
    quota.record("200::1", 10)
    with pytest.raises(QuotaExceeded):
        quota.check("200::1")


def test_bytes_per_hour_count_the_message_about_to_come() -> None:
    clock = Clock()
    quota = HourlyQuota(clock, messages_per_hour=100, bytes_per_hour=1000)
    quota.record("200::1", 700)
    quota.check("200::1", 300)
    with pytest.raises(QuotaExceeded, match="mesh_bytes_per_hour"):
        quota.check("200::1", 301)


def test_drained_buckets_are_forgotten() -> None:
    clock = Clock()
    quota = HourlyQuota(clock, messages_per_hour=10, bytes_per_hour=1000)
    for n in range(1000):
        quota.record(f"200::{n:x}", 1)
    clock.advance(7200)
    quota.check("200::1")
    assert len(quota._buckets) == 1


def test_disk_floor() -> None:
    floor = DiskFloor(Path("/db"), 1000, lambda path: free(1500))
    floor.check(400)
    with pytest.raises(InsufficientStorage, match="min_free_disk"):
        floor.check(600)
    DiskFloor(Path("/db"), 0, lambda path: free(0)).check(10**9)  # 0: no floor


def test_disk_floor_on_a_path_it_cannot_measure() -> None:
    def missing(path: Path) -> os.statvfs_result:
        raise FileNotFoundError(path)

    DiskFloor(Path("/nowhere"), 1000, missing).check()
