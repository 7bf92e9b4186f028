"""End-to-end harness: real yggdrasil routers in network namespaces, real ygbridge under twistd.

A :class:`Lab` owns everything it starts (namespaces, veth pairs, processes) and tears it all
down in :meth:`Lab.close`, which is also registered with :mod:`atexit`. Every wait is bounded and
polls a real condition; nothing sleeps blindly. Traffic only ever flows between namespaces the lab
created (10.231.N.0/24 on veth pairs, 200::/7 on each router's TUN) and on their own loopback.

Typical use::

    lab = Lab(tmp_path)
    a, b = lab.add_node("a"), lab.add_node("b")
    lab.connect(a, b)                 # b listens on its veth address, a peers with it
    lab.start_routers()               # waits for admin sockets and for the peering to be up
    a.bridge.setup(users={"alice": "pw"})
    a.bridge.start()                  # waits for {"event": "ygbridge.ready"}
    with a.bridge.smtp(login=("alice", "pw")) as smtp: ...
    lab.close()
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import functools
import imaplib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

SUBMISSION_PORT = 1025
IMAP_PORT = 1143
MESH_PORT = 25
ROUTER_PORT = 7301
CLIENT_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0
LOG_TAIL = 30_000

YGGDRASIL_VERSIONS = {
    # version: (environment variable, default binary path)
    "0.5.12": ("YGG_05", "/opt/yggdrasil-0.5.12/usr/sbin/yggdrasil"),
    "0.4.7": ("YGG_04", "/usr/sbin/yggdrasil"),
}

#: The configuration fields that hold a router's key pair (0.4 has both, 0.5 only PrivateKey).
KEY_FIELDS = ("PrivateKey", "PublicKey")

T = TypeVar("T")


class HarnessError(Exception):
    """The test environment could not be set up or a bounded wait ran out."""


class ProcessExited(HarnessError):
    """A daemon the harness waits for has exited: waiting longer is pointless."""


# --------------------------------------------------------------------------- small utilities


def wait_until(
    condition: Callable[[], T | None | bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except ProcessExited:
            raise
        except (OSError, HarnessError, subprocess.SubprocessError, imaplib.IMAP4.error) as exc:
            value, last_error = None, exc
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = f"; last error: {last_error!r}" if last_error else ""
            if detail is not None:
                extra += f"\n{detail()}"
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def holds_for(condition: Callable[[], object], *, duration: float, what: str, interval: float = 0.5) -> None:
    """Poll ``condition`` for ``duration`` seconds (a window in which nothing may go wrong);
    HarnessError as soon as it is false."""
    deadline = time.monotonic() + duration
    while True:
        if not condition():
            raise HarnessError(f"no longer true: {what}")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(interval, left))


def meshname_domain(address: ipaddress.IPv6Address) -> str:
    """``<meshname>.meship`` for a node address, computed independently of the product."""
    return base64.b32encode(address.packed).decode("ascii").rstrip("=").lower() + ".meship"


def tail(text: str, limit: int = LOG_TAIL) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def find_command(name: str) -> str:
    """A console script of the Python running the tests (its bin directory first), else PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise HarnessError(
            f"{name!r} not found next to {sys.executable} or on PATH: install the product "
            "(pip install .) before running the integration tests"
        )
    return found


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


def check_privileges() -> None:
    """Namespaces, veth pairs and TUN devices need root and iproute2."""
    if os.geteuid() != 0:
        raise HarnessError("the integration tests create network namespaces: run them as root")
    for command, package in (("ip", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(command) is None:
            raise HarnessError(f"`{command}` is missing (apt-get install {package})")
    if not Path("/dev/net/tun").exists():
        raise HarnessError("/dev/net/tun is missing: yggdrasil cannot create its TUN interface")


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _die_with_parent() -> None:
    """Runs in each child before exec: SIGKILL it if the test runner dies without cleaning up."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _run(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        raise HarnessError(
            f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def _stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, bounded wait, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    return proc.returncode


# --------------------------------------------------------------------------- namespaces


class Namespace:
    """A named network namespace (``ip netns``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exists = True

    @classmethod
    def create(cls, name: str) -> Namespace:
        """A new namespace with ``lo`` up."""
        _run(["ip", "netns", "add", name])
        ns = cls(name)
        try:
            ns.run(["ip", "link", "set", "lo", "up"])
        except HarnessError:
            ns.delete()
            raise
        return ns

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(
            self.argv(argv),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
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
        result = _run(["ip", "netns", "pids", self.name], check=False, timeout=10)
        return [int(p) for p in result.stdout.split()]

    def delete(self) -> None:
        if not self.exists:
            return
        for pid in self.pids():  # stragglers are ours: nobody else uses this namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run(["ip", "netns", "del", self.name], check=False, timeout=10)
        self.exists = False


# --------------------------------------------------------------------------- yggdrasil


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
        return json.loads(_run([str(self.binary), "-genconf", "-json"]).stdout)

    def new_key(self) -> None:
        """Give the stopped router a fresh key pair (so a new address) for its next :meth:`start`;
        everything else in its configuration (Listen, Peers, AdminListen, IfName) is kept."""
        if self.process is not None and self.process.poll() is None:
            raise HarnessError(f"stop the router on {self.node.name} before giving it a new key")
        fresh = self._genconf()
        self.config.update({name: fresh[name] for name in KEY_FIELDS if name in fresh})

    def start(self, timeout: float = 30.0) -> None:
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
        result = _run(
            [str(self.ctl_binary), "-endpoint", self.admin_uri, "-json", request, *arguments],
            timeout=10,
            check=False,
        )
        try:
            if result.returncode == 0:
                return json.loads(result.stdout)
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
        return self.ctl("gettun")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------- ygbridge


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class BridgeStartError(HarnessError):
    """The bridge exited (or never said it was ready)."""


@dataclass
class BridgeRun:
    """One twistd process: its output lines and the JSON events among them."""

    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    def read(self, log_path: Path) -> None:
        """Reader thread: copy stdout to the log file, parse JSON lines."""
        assert self.process.stdout is not None
        with log_path.open("a", encoding="utf-8") as log:
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                with self.changed:
                    self.lines.append(line)
                    if isinstance(event, dict):
                        self.events.append(event)
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def non_json_lines(self) -> list[str]:
        """Output lines that are not one JSON object each (the contract says all must be)."""
        with self.changed:
            return [line for line in self.lines if not _is_json_object(line)]

    def mark(self) -> int:
        """How many events were logged so far: a ``since`` for :meth:`matching` and :meth:`wait_events`."""
        with self.changed:
            return len(self.events)

    def matching(
        self, name: str, *, since: int = 0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """Events named ``name`` (that satisfy ``where``) logged after the first ``since`` events."""
        with self.changed:
            return [
                event
                for event in self.events[since:]
                if event.get("event") == name and (where is None or where(event))
            ]

    def wait_events(
        self,
        name: str,
        timeout: float,
        *,
        since: int = 0,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Bounded wait until ``count`` events named ``name`` (and ``where``) follow the first
        ``since``; returns them all. BridgeStartError if the process ends or time runs out first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.matching(name, since=since, where=where)
                if len(found) >= count:
                    return found
                finished = self.process.poll() is not None and not (self.reader and self.reader.is_alive())
                if finished:
                    raise BridgeStartError(
                        f"ygbridge exited {self.process.returncode} after {len(found)} of {count} "
                        f"{name!r} event(s):\n" + tail("\n".join(self.lines))
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BridgeStartError(
                        f"{len(found)} of {count} {name!r} event(s) within {timeout:.0f}s:\n"
                        + tail("\n".join(self.lines))
                    )
                self.changed.wait(min(left, 0.5))

    def wait_event(self, name: str, timeout: float, *, since: int = 0) -> dict[str, Any]:
        """The first event named ``name`` after ``since``; BridgeStartError if the process ends without it."""
        return self.wait_events(name, timeout, since=since)[0]


class Bridge:
    """ygbridge on one node: config file, CLI inside the namespace, the twistd service, clients."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.config_path = node.dir / "ygbridge.ini"
        self.database = node.dir / "ygbridge.db"
        self.pidfile = node.dir / "twistd.pid"
        self.log_path = node.dir / "ygbridge.log"
        self.settings: dict[str, dict[str, str]] = {
            "yggdrasil": {"admin": node.router.admin_uri},
            "mesh": {"port": str(MESH_PORT)},
            "submission": {"listen": f"tcp:{SUBMISSION_PORT}:interface=127.0.0.1"},
            "imap": {"listen": f"tcp:{IMAP_PORT}:interface=127.0.0.1"},
            "storage": {"database": f"sqlite:///{self.database}"},
            "delivery": {"retry_initial": "1s", "retry_max": "5s", "queue_interval": "1s"},
        }
        self.run: BridgeRun | None = None
        self.ready: dict[str, Any] | None = None
        self.wrapper: list[str] = []  # a command twistd runs under (``strace -f -o FILE``)
        self.passwords: dict[str, str] = {}

    # -- configuration and CLI

    def configure(self, **sections: dict[str, str]) -> None:
        """Merge keys into the configuration (``configure(delivery={"retry_horizon": "8s"})``) and
        rewrite the file; a running bridge sees them after its next start."""
        for section, values in sections.items():
            self.settings.setdefault(section, {}).update(values)
        self.write_config()

    def write_config(self) -> None:
        text = "".join(
            f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
            for section, values in self.settings.items()
        )
        self.config_path.write_text(text)

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``ygbridge --config FILE ARGS`` inside the node's namespace."""
        if not self.config_path.exists():
            self.write_config()
        argv = [find_command("ygbridge"), "--config", str(self.config_path), *args]
        result = self.node.ns.run(argv, input=input, check=False, timeout=timeout)
        self._note(
            f"$ ygbridge {' '.join(args)}  -> exit {result.returncode}\n{result.stdout}{result.stderr}"
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"ygbridge {' '.join(args)} on {self.node.name} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def add_user(self, name: str, password: str) -> None:
        self.cli("user", "add", name, "--password-stdin", input=password + "\n")
        self.passwords[name] = password

    def setup(self, users: dict[str, str] | None = None) -> None:
        """Write the config, ``init``, and add users."""
        self.write_config()
        self.cli("init")
        for name, password in (users or {}).items():
            self.add_user(name, password)

    # -- the service

    def _spawn(self) -> BridgeRun:
        if not self.config_path.exists():
            self.write_config()
        argv = [
            *self.wrapper,
            find_command("twistd"),
            "-n",
            "--pidfile",
            str(self.pidfile),
            "--logger",
            "ygbridge.logs.observer",
            "ygbridge",
            "--config",
            str(self.config_path),
        ]
        self._note(f"$ {shlex.join(argv)}")
        process = self.node.ns.popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.node.dir
        )
        run = BridgeRun(process)
        run.reader = threading.Thread(
            target=run.read, args=(self.log_path,), daemon=True, name=f"ygbridge-{self.node.name}"
        )
        run.reader.start()
        self.run = run
        return run

    def start(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Start twistd and wait for ``ygbridge.ready``; returns that event."""
        if self.run is not None and self.run.process.poll() is None:
            raise HarnessError(f"bridge on {self.node.name} is already running")
        run = self._spawn()
        try:
            self.ready = run.wait_event("ygbridge.ready", timeout)
        except BridgeStartError:
            self.stop()
            raise
        return self.ready

    def run_until_exit(self, timeout: float = READY_TIMEOUT) -> tuple[int, str, list[dict[str, Any]]]:
        """Start twistd expecting it to exit by itself: (exit status, output, JSON events)."""
        run = self._spawn()
        try:
            run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HarnessError(
                f"ygbridge on {self.node.name} was expected to exit but still runs "
                f"after {timeout:.0f}s:\n{tail(run.output())}"
            ) from None
        if run.reader is not None:
            run.reader.join(STOP_TIMEOUT)
        return run.process.returncode, run.output(), list(run.events)

    def stop(self) -> int | None:
        """SIGTERM twistd (SIGKILL after a bounded wait); returns its exit status."""
        run = self.run
        if run is None:
            return None
        status = _stop_process(run.process)
        if run.reader is not None:
            run.reader.join(STOP_TIMEOUT)
        self._note(f"[harness] twistd exited {status}")
        self.run = None
        return status

    def kill(self) -> int | None:
        """SIGKILL twistd (no shutdown of any kind, as on a power cut); returns its exit status."""
        run = self.run
        if run is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            run.process.kill()
        return self.stop()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the running twistd (SIGSTOP/SIGCONT to freeze and thaw it)."""
        if self.run is None or self.run.process.poll() is not None:
            raise HarnessError(f"bridge on {self.node.name} is not running")
        self.run.process.send_signal(signum)

    def current(self) -> BridgeRun:
        """The running twistd's output and events."""
        if self.run is None:
            raise HarnessError(f"bridge on {self.node.name} is not running")
        return self.run

    def status(self) -> str:
        """What ``ygbridge status`` prints."""
        return self.cli("status").stdout

    def restart(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        self.stop()
        return self.start(timeout)

    # -- identity

    @property
    def domain(self) -> str:
        assert self.ready is not None, "bridge not started"
        return str(self.ready["domain"])

    def address_of(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def literal_of(self, user: str) -> str:
        assert self.node.router.address is not None
        return f"{user}@[IPv6:{self.node.router.address.compressed}]"

    # -- clients inside the namespace

    def smtp(
        self, login: tuple[str, str] | None = None, timeout: float = CLIENT_TIMEOUT
    ) -> contextlib.AbstractContextManager[smtplib.SMTP]:
        """A submission client connected from inside the namespace (EHLO done; AUTH if ``login``)."""
        return smtp_client(self.node.ns, "127.0.0.1", SUBMISSION_PORT, login=login, timeout=timeout)

    @contextlib.contextmanager
    def imap(
        self, login: tuple[str, str] | None = None, timeout: float = CLIENT_TIMEOUT
    ) -> Iterator[imaplib.IMAP4]:
        """An IMAP client connected from inside the namespace (LOGIN done if ``login``)."""
        with self.node.ns.entered():
            client = imaplib.IMAP4("127.0.0.1", IMAP_PORT, timeout=timeout)
        try:
            if login is not None:
                if "LOGINDISABLED" in client.capabilities and "STARTTLS" in client.capabilities:
                    client.starttls(_insecure_tls())
                client.login(*login)
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
                client.logout()
            with contextlib.suppress(OSError):
                client.shutdown()

    # -- logs

    def _note(self, text: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(text.rstrip("\n") + "\n")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def smtp_client(
    ns: Namespace,
    host: str,
    port: int,
    *,
    login: tuple[str, str] | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> Iterator[smtplib.SMTP]:
    """An SMTP client whose socket lives in ``ns``; EHLO done, STARTTLS only if AUTH needs it."""
    with ns.entered():
        client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=timeout)
    try:
        client.ehlo()
        if login is not None:
            if not client.has_extn("auth") and client.has_extn("starttls"):
                client.starttls(context=_insecure_tls())
                client.ehlo()
            client.login(*login)
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _insecure_tls() -> ssl.SSLContext:
    """The bridges use self-signed certificates: encrypt, but do not verify."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- nodes and labs


class Node:
    """A namespace with its router and (not yet started) bridge."""

    def __init__(self, lab: Lab, name: str, version: str, ifname: str) -> None:
        self.lab = lab
        self.name = name
        self.dir = lab.dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ns = Namespace.create(f"{lab.prefix}-{name}")
        lab._namespaces.append(self.ns)
        self.router = Router(self, version, ifname)
        self.bridge = Bridge(self)

    @property
    def address(self) -> ipaddress.IPv6Address:
        assert self.router.address is not None, "router not started"
        return self.router.address

    def ping(self, other: Node, timeout: float = 2.0) -> bool:
        """One ICMPv6 echo over the mesh to ``other``'s node address (stays inside our namespaces)."""
        result = self.ns.run(
            ["ping", "-6", "-c", "1", "-W", str(max(1, int(timeout))), str(other.address)],
            check=False,
            timeout=timeout + 5,
        )
        return result.returncode == 0


_live_labs: list[Lab] = []
_all_labs: list[Lab] = []
_lab_counter = 0


def _cleanup_all() -> None:
    for lab in list(_live_labs):
        lab.close()


atexit.register(_cleanup_all)


class Lab:
    """Namespaces, links, routers and bridges of one test scenario; :meth:`close` removes them all."""

    def __init__(self, directory: Path) -> None:
        global _lab_counter
        check_privileges()
        _lab_counter += 1
        self.prefix = f"ygb{os.getpid()}-L{_lab_counter}"
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, Node] = {}
        self._namespaces: list[Namespace] = []
        self._links = 0
        self._veths: dict[frozenset[str], list[tuple[Node, str]]] = {}
        self._dumped: dict[str, int] = {}
        self.closed_at: float | None = None
        _live_labs.append(self)
        _all_labs.append(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_node(self, name: str, version: str = "0.5.12", ifname: str = "auto") -> Node:
        if name in self.nodes:
            raise HarnessError(f"node {name!r} already exists")
        node = Node(self, name, version, ifname)
        self.nodes[name] = node
        return node

    def connect(self, dialer: Node, listener: Node) -> None:
        """A veth pair 10.231.N.1 (dialer) <-> 10.231.N.2 (listener); the dialer peers over TCP."""
        self._links += 1
        n = self._links
        if n > 250:
            raise HarnessError("too many links in one lab")
        ends = (
            (dialer, f"v{n}-{listener.name}"[:15], ipaddress.IPv4Address(f"10.231.{n}.1")),
            (listener, f"v{n}-{dialer.name}"[:15], ipaddress.IPv4Address(f"10.231.{n}.2")),
        )
        (a, a_if, _), (b, b_if, b_address) = ends
        _run(f"ip link add {a_if} netns {a.ns.name} type veth peer name {b_if} netns {b.ns.name}".split())
        for node, ifname, address in ends:
            node.ns.run(["ip", "addr", "add", f"{address}/24", "dev", ifname])
            node.ns.run(["ip", "link", "set", ifname, "up"])
        self._veths[frozenset((dialer.name, listener.name))] = [(node, ifname) for node, ifname, _ in ends]
        uri = f"tcp://{b_address}:{ROUTER_PORT}"
        listener.router.config["Listen"].append(uri)
        dialer.router.config["Peers"].append(uri)

    def shape_link(self, a: Node, b: Node, rate: str) -> None:
        """Limit what ``a`` sends to ``b`` over their veth to ``rate`` (a tc rate such as ``20mbit``)."""
        for node, ifname in self._veths[frozenset((a.name, b.name))]:
            if node is a:
                node.ns.run(
                    [
                        "tc",
                        "qdisc",
                        "replace",
                        "dev",
                        ifname,
                        "root",
                        "tbf",
                        "rate",
                        rate,
                        "burst",
                        "64kb",
                        "latency",
                        "1s",
                    ]
                )

    def set_link(self, a: Node, b: Node, up: bool) -> None:
        """Take the veth pair between ``a`` and ``b`` down (both ends, as a pulled cable) or up."""
        ends = self._veths.get(frozenset((a.name, b.name)))
        if ends is None:
            raise HarnessError(f"no link between {a.name} and {b.name}")
        for node, ifname in ends:
            node.ns.run(["ip", "link", "set", ifname, "up" if up else "down"])

    def start_routers(self, timeout: float = 30.0) -> None:
        """Start every router, then wait until each configured peering is up on both sides."""
        # Listeners first: a 0.4 router retries a refused peer only after a minute.
        for node in sorted(self.nodes.values(), key=lambda n: not n.router.config["Listen"]):
            if node.router.process is None:
                node.router.start(timeout)
        for node in self.nodes.values():
            expected = len(node.router.config["Peers"]) + sum(
                uri in other.router.config["Peers"]
                for other in self.nodes.values()
                for uri in node.router.config["Listen"]
            )
            if expected:
                node.router.wait_peers(expected, timeout)

    def wait_reachable(self, a: Node, b: Node, timeout: float = 30.0) -> None:
        """Both nodes answer ping over the mesh (routes and sessions established)."""
        wait_until(
            lambda: a.ping(b) and b.ping(a),
            timeout=timeout,
            interval=0.2,
            what=f"{a.name} and {b.name} to reach each other over yggdrasil",
        )

    def logs(self) -> dict[str, str]:
        """Router and bridge logs of every node; a log already returned unchanged is not repeated."""
        out: dict[str, str] = {}
        for node in self.nodes.values():
            for name, text in (
                (f"{node.name}: yggdrasil {node.router.version} log", node.router.log()),
                (f"{node.name}: ygbridge log", node.bridge.log()),
            ):
                if text and self._dumped.get(name) == len(text):
                    out[name] = f"(unchanged since the previous failure's dump, {node.dir})"
                else:
                    self._dumped[name] = len(text)
                    out[name] = tail(text) or "(empty)"
        return out

    def close(self) -> None:
        """Stop every bridge and router, delete every namespace (also the veths in them)."""
        if self in _live_labs:
            _live_labs.remove(self)
        errors: list[str] = []
        for node in self.nodes.values():
            for stop in (node.bridge.stop, node.router.stop):
                try:
                    stop()
                except Exception as exc:  # keep cleaning up
                    errors.append(f"{node.name}: {exc!r}")
        for ns in reversed(self._namespaces):
            try:
                ns.delete()
            except Exception as exc:
                errors.append(f"{ns.name}: {exc!r}")
        self.closed_at = time.monotonic()
        if errors:
            raise HarnessError("cleanup problems: " + "; ".join(errors))


def labs_active_since(start: float) -> list[Lab]:
    """Labs still open, or closed after ``start`` (for dumping logs of a failed test)."""
    return [lab for lab in _all_labs if lab.closed_at is None or lab.closed_at >= start]


_STALE = re.compile(r"^ygb(\d+)-L\d+-")


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by a harness run whose process is gone (e.g. after SIGKILL)."""
    result = _run(["ip", "netns", "list"], check=False, timeout=10)
    removed = []
    for line in result.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _STALE.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its harness is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        Namespace(name).delete()
        removed.append(name)
    return removed
