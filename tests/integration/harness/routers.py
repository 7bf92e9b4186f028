"""yggdrasil daemons: the binary of each labelled version, and one router inside a node's namespace."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HarnessError, ProcessExited
from .processes import run_command, stop_process
from .waiting import wait_until

if TYPE_CHECKING:
    from .labs import Node

ROUTER_PORT = 7301

YGGDRASIL_VERSIONS = {
    # version: (environment variable, default binary path)
    "0.5.12": ("YGG_05", "/opt/yggdrasil-0.5.12/usr/sbin/yggdrasil"),
    "0.4.7": ("YGG_04", "/usr/sbin/yggdrasil"),
}

#: The configuration fields that hold a router's key pair (0.4 has both, 0.5 only PrivateKey).
KEY_FIELDS = ("PrivateKey", "PublicKey")


def yggdrasil_binary(version: str) -> Path:
    """The yggdrasil binary for ``version`` (env YGG_05 / YGG_04), checked with its yggdrasilctl."""
    if version not in YGGDRASIL_VERSIONS:
        raise HarnessError(f"unknown yggdrasil version {version!r}; known: {sorted(YGGDRASIL_VERSIONS)}")
    variable, default = YGGDRASIL_VERSIONS[version]
    binary = Path(os.environ.get(variable) or default)
    for path in (binary, binary.with_name("yggdrasilctl")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HarnessError(
                f"yggdrasil {version}: {path} is missing or not executable (set {variable} to the "
                f"yggdrasil binary, with yggdrasilctl beside it; .ci/run installs both)"
            )
    reported = binary_version(str(binary))
    if reported.split(".")[:2] != version.split(".")[:2]:
        raise HarnessError(
            f"the tests labelled yggdrasil {version} would run {binary}, which is yggdrasil {reported} "
            f"(set {variable} to a {'.'.join(version.split('.')[:2])}.x binary; .ci/run unpacks 0.5.x "
            "into /opt and Debian's 0.4.7 is /usr/sbin/yggdrasil unless setup-node.sh replaced it)"
        )
    return binary


@functools.cache
def binary_version(binary: str) -> str:
    """The version ``binary -version`` reports (e.g. ``0.5.12``). Debian's 0.4.7 build reports
    "unknown": its series is then told by the configuration it generates (0.4 writes the public key,
    0.5 does not), as ``0.4.x`` or ``0.5.x``."""
    try:
        output = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"Build version:\s*v?(\S+)", output)
        if match is not None and match.group(1) != "unknown":
            return match.group(1)
        generated = subprocess.run([binary, "-genconf", "-json"], capture_output=True, text=True, timeout=10)
        return "0.4.x" if "PublicKey" in json.loads(generated.stdout) else "0.5.x"
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise HarnessError(f"cannot tell the version of {binary}: {exc}") from None


class Router:
    """One yggdrasil daemon inside a node's namespace, configured from ``-genconf -json``."""

    def __init__(self, node: Node, version: str, ifname: str) -> None:
        self.node = node
        self.version = version
        self.binary = yggdrasil_binary(version)
        self.ctl_binary = self.binary.with_name("yggdrasilctl")
        self.socket = node.dir / "yggdrasil.sock"
        if len(str(self.socket)) > 100:  # sun_path holds 108 bytes
            raise HarnessError(
                f"admin socket path too long for a unix socket: {self.socket} (shorter --basetemp)"
            )
        self.admin_uri = f"unix://{self.socket}"
        self.config_path = node.dir / "yggdrasil.json"
        self.log_path = node.dir / "yggdrasil.log"
        self.config: dict[str, Any] = self._genconf()
        self.config.update(
            AdminListen=self.admin_uri, IfName=ifname, MulticastInterfaces=[], Listen=[], Peers=[]
        )
        self.process: subprocess.Popen[Any] | None = None
        self.key: str | None = None
        self.address: ipaddress.IPv6Address | None = None

    def _genconf(self) -> dict[str, Any]:
        """A fresh configuration (with a fresh key pair) from ``yggdrasil -genconf -json``."""
        config: dict[str, Any] = json.loads(run_command([str(self.binary), "-genconf", "-json"]).stdout)
        return config

    def new_key(self) -> None:
        """Give the stopped router a fresh key pair (so a new address) for its next :meth:`start`;
        everything else in its configuration (Listen, Peers, AdminListen, IfName) is kept."""
        if self.process is not None and self.process.poll() is None:
            raise HarnessError(f"stop the router on {self.node.name} before giving it a new key")
        fresh = self._genconf()
        self.config.update({name: fresh[name] for name in KEY_FIELDS if name in fresh})

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start yggdrasil, and wait until its admin socket answers getself."""
        self.config_path.write_text(json.dumps(self.config, indent=2))
        with self.log_path.open("ab") as log:
            self.process = self.node.ns.popen(
                [str(self.binary), "-useconffile", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def answers() -> dict[str, Any] | None:
            if self.process is not None and self.process.poll() is not None:
                raise ProcessExited(
                    f"yggdrasil {self.version} on {self.node.name} exited "
                    f"{self.process.returncode}:\n{self.log()}"
                )
            return self.ctl("getself") if self.socket.exists() else None

        me = wait_until(
            answers, timeout=timeout, what=f"admin socket of yggdrasil on {self.node.name}", detail=self.log
        )
        self.key = me["key"]
        self.address = ipaddress.IPv6Address(me["address"])

    def ctl(self, request: str, *arguments: str) -> dict[str, Any]:
        """The real ``yggdrasilctl -json`` answer (unix sockets are not bound to a namespace)."""
        result = run_command(
            [str(self.ctl_binary), "-endpoint", self.admin_uri, "-json", request, *arguments],
            timeout=10,
            check=False,
        )
        try:
            if result.returncode == 0:
                answer: dict[str, Any] = json.loads(result.stdout)
                return answer
        except ValueError:
            pass
        raise HarnessError(f"yggdrasilctl {request} on {self.node.name}: {result.stderr or result.stdout}")

    def peers_up(self) -> list[dict[str, Any]]:
        """Peers that are connected (0.5 lists configured-but-down peers with up=false, key="")."""
        peers = self.ctl("getpeers").get("peers") or []
        return [p for p in peers if p.get("key") and p.get("up", True)]

    def wait_peers(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Bounded polling of getpeers until ``count`` peerings are up."""

        def enough() -> list[dict[str, Any]] | None:
            peers = self.peers_up()
            return peers if len(peers) >= count else None

        return wait_until(
            enough,
            timeout=timeout,
            what=f"{count} peering(s) up on {self.node.name}",
            detail=self.log,
        )

    def tun(self) -> dict[str, Any]:
        """The router's TUN state (``gettun``)."""
        return self.ctl("gettun")

    def stop(self) -> None:
        """SIGTERM yggdrasil (SIGKILL after a bounded wait)."""
        if self.process is not None:
            stop_process(self.process)

    def log(self) -> str:
        """What yggdrasil has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
