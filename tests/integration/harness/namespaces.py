"""Network namespaces (``ip netns``): create, run inside, enter from a thread, delete with stragglers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import HarnessError
from .processes import die_with_parent, libc, run_command

_CLONE_NEWNET = 0x40000000


def check_privileges() -> None:
    """Namespaces, veth pairs and TUN devices need root and iproute2."""
    if os.geteuid() != 0:
        raise HarnessError("the integration tests create network namespaces: run them as root")
    for command, package in (("ip", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(command) is None:
            raise HarnessError(f"`{command}` is missing (apt-get install {package})")
    if not Path("/dev/net/tun").exists():
        raise HarnessError("/dev/net/tun is missing: yggdrasil cannot create its TUN interface")


def _setns(fd: int) -> None:
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Namespace:
    """A named network namespace (``ip netns``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exists = True

    @classmethod
    def create(cls, name: str) -> Namespace:
        """A new namespace with ``lo`` up."""
        run_command(["ip", "netns", "add", name])
        ns = cls(name)
        try:
            ns.run(["ip", "link", "set", "lo", "up"])
        except HarnessError:
            ns.delete()
            raise
        return ns

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (bounded, see :func:`run_command`)."""
        return run_command(self.argv(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a daemon inside the namespace, in its own session, killed if the test runner dies."""
        return subprocess.Popen(
            self.argv(argv),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
            **kwargs,
        )

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Switch the *current thread* into the namespace; sockets made here stay in it."""
        own = os.open(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace kernel parameter (``net.ipv4.tcp_syn_retries``...)."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def tcp_sockets(self, state: str, where: str = "") -> list[str]:
        """``ss -tinH state STATE WHERE`` here: one text per socket (address line and info line)."""
        argv = ["ss", "-tinH", "state", state] + ([where] if where else [])
        text = self.run(argv, timeout=10).stdout
        return [block.strip() for block in re.split(r"\n(?=\S)", text) if block.strip()]

    def tcp_bytes_received(self, port: int) -> int:
        """Bytes received so far on the established TCP connections to local ``port``."""
        sockets = self.tcp_sockets("established", f"( sport = :{port} )")
        return sum(int(m.group(1)) for s in sockets if (m := re.search(r"bytes_received:(\d+)", s)))

    def pids(self) -> list[int]:
        """The processes running inside the namespace."""
        result = run_command(["ip", "netns", "pids", self.name], check=False, timeout=10)
        return [int(p) for p in result.stdout.split()]

    def delete(self) -> None:
        """Kill whatever still runs inside, then delete the namespace (and the veths in it)."""
        if not self.exists:
            return
        for pid in self.pids():  # stragglers are ours: nobody else uses this namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run_command(["ip", "netns", "del", self.name], check=False, timeout=10)
        self.exists = False
