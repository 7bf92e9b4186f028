"""What a process costs while an attack runs: resident memory and CPU time from /proc, and the
figures the attack tests print (run with ``-s``) for SECURITY.md.

CPU is counted in seconds the process ran (user and system), not in wall time: a shared, loaded
machine slows a test down but barely changes the work the bridge does, so a CPU budget can be
asserted where a timing could not.
"""

from __future__ import annotations

import os
import re

MiB = 1024 * 1024


def figure(name: str, value: object) -> None:
    """Print one measured figure, tagged for grepping the test output."""
    print(f"\n[figure] {name}: {value}")


def status_bytes(pid: int, key: str) -> int:
    """A ``kB`` figure of /proc/PID/status (VmRSS, VmHWM), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        found = re.search(rf"^{key}:\s+(\d+) kB", status.read(), re.M)
    if found is None:
        raise LookupError(f"no {key} for process {pid}")
    return int(found[1]) * 1024


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used so far (user and system), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cost:
    """A process's peak RSS growth and CPU time over a ``with`` block: its high-water mark is reset
    at the start (``/proc/PID/clear_refs``) and read at the end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = 0
        self._cpu_before = self.cpu = 0.0

    def __enter__(self) -> Cost:
        with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # VmHWM := VmRSS
        self.before = status_bytes(self.pid, "VmRSS")
        self._cpu_before = cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = status_bytes(self.pid, "VmHWM")
        self.cpu = cpu_seconds(self.pid) - self._cpu_before

    @property
    def growth(self) -> int:
        """How far the peak RSS rose above the RSS at the start."""
        return self.peak - self.before

    def so_far(self) -> str:
        """The figures up to now, while the block runs."""
        peak = status_bytes(self.pid, "VmHWM")
        cpu = cpu_seconds(self.pid) - self._cpu_before
        return (
            f"RSS {self.before / MiB:.0f} MiB, peak so far {peak / MiB:.0f} MiB "
            f"(+{(peak - self.before) / MiB:.1f}), CPU {cpu:.2f} s"
        )

    def __str__(self) -> str:
        return (
            f"RSS {self.before / MiB:.0f} MiB, peak {self.peak / MiB:.0f} MiB (+{self.growth / MiB:.1f}), "
            f"CPU {self.cpu:.2f} s"
        )

    def within(self, cpu: float, what: str) -> None:
        """Assert that the block cost at most ``cpu`` seconds of CPU."""
        assert self.cpu <= cpu, f"{what} cost {self.cpu:.2f} s of CPU (budget {cpu} s)"
