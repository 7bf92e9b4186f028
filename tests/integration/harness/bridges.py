"""ygbridge under twistd on one node: its configuration, its CLI inside the namespace, the service's
output and JSON events, and clients of its ports."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ipaddress
import json
import shlex
import smtplib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clients import CLIENT_TIMEOUT, imap_client, smtp_client
from .errors import BridgeStartError, HarnessError
from .processes import COMMAND_TIMEOUT, STOP_TIMEOUT, find_command, stop_process, tail

if TYPE_CHECKING:
    from .labs import Node

SUBMISSION_PORT = 1025
IMAP_PORT = 1143
MESH_PORT = 25
READY_TIMEOUT = 60.0


def meshname_domain(address: ipaddress.IPv6Address) -> str:
    """``<meshname>.meship`` for a node address, computed independently of the product."""
    return base64.b32encode(address.packed).decode("ascii").rstrip("=").lower() + ".meship"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


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
        """Everything the process has printed so far."""
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
        """Write :attr:`settings` to the INI file the bridge and its CLI read."""
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
        """``ygbridge user add NAME --password-stdin``; the password is kept for the tests."""
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
        status = stop_process(run.process)
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
        """Stop twistd and start it again; returns the new ``ygbridge.ready`` event."""
        self.stop()
        return self.start(timeout)

    # -- identity

    @property
    def domain(self) -> str:
        """The node's mail domain, as the running bridge announced it when ready."""
        assert self.ready is not None, "bridge not started"
        return str(self.ready["domain"])

    def address_of(self, user: str) -> str:
        """``user@<meshname>.meship`` on this node."""
        return f"{user}@{self.domain}"

    def literal_of(self, user: str) -> str:
        """``user@[IPv6:<node address>]``, the address-literal form of the same mailbox."""
        assert self.node.router.address is not None
        return f"{user}@[IPv6:{self.node.router.address.compressed}]"

    # -- clients inside the namespace

    def smtp(
        self, login: tuple[str, str] | None = None, timeout: float = CLIENT_TIMEOUT
    ) -> contextlib.AbstractContextManager[smtplib.SMTP]:
        """A submission client connected from inside the namespace (EHLO done; AUTH if ``login``)."""
        return smtp_client(self.node.ns, "127.0.0.1", SUBMISSION_PORT, login=login, timeout=timeout)

    def imap(
        self, login: tuple[str, str] | None = None, timeout: float = CLIENT_TIMEOUT
    ) -> contextlib.AbstractContextManager[imaplib.IMAP4]:
        """An IMAP client connected from inside the namespace (LOGIN done if ``login``)."""
        return imap_client(self.node.ns, "127.0.0.1", IMAP_PORT, login=login, timeout=timeout)

    # -- logs

    def _note(self, text: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(text.rstrip("\n") + "\n")

    def log(self) -> str:
        """The bridge's log file: its CLI runs, twistd's output and the harness's notes."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
