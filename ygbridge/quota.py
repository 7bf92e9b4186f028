"""How much mail the node takes: per sending node and hour, and down to a floor of free disk.

Pure policy with an injected clock (and ``statvfs``), used by the mesh port (quotas) and both
SMTP ports (the disk floor); the protocol turns the errors into temporary SMTP refusals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IReactorTime

from ygbridge.errors import InsufficientStorage, QuotaExceeded

HOUR = 3600.0


@dataclass
class _Bucket:
    messages: float
    octets: float
    at: float


class HourlyQuota:
    """Messages and bytes per sending node per hour, as leaky buckets.

    A node may send a burst of up to the limit at once; its allowance then comes back evenly,
    the whole limit per hour. Buckets that have drained are forgotten, so an idle node costs nothing.
    """

    def __init__(self, clock: IReactorTime, messages_per_hour: int, bytes_per_hour: int) -> None:
        self._clock = clock
        self._messages = messages_per_hour
        self._octets = bytes_per_hour
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep = clock.seconds() + HOUR

    def _bucket(self, node: str) -> _Bucket:
        now = self._clock.seconds()
        if now >= self._next_sweep:
            self._sweep(now)
        bucket = self._buckets.get(node)
        if bucket is None:
            bucket = self._buckets[node] = _Bucket(0.0, 0.0, now)
        drained = max(0.0, now - bucket.at) / HOUR
        bucket.messages = max(0.0, bucket.messages - drained * self._messages)
        bucket.octets = max(0.0, bucket.octets - drained * self._octets)
        bucket.at = now
        return bucket

    def _sweep(self, now: float) -> None:
        self._buckets = {node: b for node, b in self._buckets.items() if now - b.at < HOUR}
        self._next_sweep = now + HOUR

    def check(self, node: str, size: int = 0) -> None:
        """QuotaExceeded if one more message of ``size`` octets from ``node`` is over a limit."""
        bucket = self._bucket(node)
        if bucket.messages + 1 > self._messages:
            raise QuotaExceeded(
                f"Node {node} has sent its limit of {self._messages} messages per hour "
                "(mesh_messages_per_hour); try again later"
            )
        if bucket.octets + size > self._octets:
            raise QuotaExceeded(
                f"Node {node} has sent its limit of {self._octets} bytes per hour "
                "(mesh_bytes_per_hour); try again later"
            )

    def record(self, node: str, size: int) -> None:
        """Count one accepted message of ``size`` octets from ``node``."""
        bucket = self._bucket(node)
        bucket.messages += 1
        bucket.octets += size


class DiskFloor:
    """Refuses mail while the filesystem holding ``path`` has less than ``minimum`` octets free."""

    def __init__(
        self, path: Path, minimum: int, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs
    ) -> None:
        self._path = path
        self._minimum = minimum
        self._statvfs = statvfs

    def check(self, incoming: int = 0) -> None:
        """InsufficientStorage if storing ``incoming`` more octets would go below the floor."""
        if self._minimum <= 0:
            return
        try:
            stat = self._statvfs(self._path)
        except OSError:
            return  # not measurable (yet): the database reports a real shortage itself
        free = stat.f_bavail * stat.f_frsize
        if free - incoming < self._minimum:
            raise InsufficientStorage(
                f"Insufficient system storage: less than {self._minimum} bytes free (min_free_disk)"
            )
