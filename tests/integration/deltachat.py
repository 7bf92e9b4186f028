"""Delta Chat core as a real client: ``deltachat-rpc-server`` inside a node's namespace, driven over
its stdio JSON-RPC with ``deltachat-rpc-client``, so its IMAP and SMTP connections reach that node's
own listeners. Every wait is bounded; every event an account sees is logged to a file for failures.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import deltachat_rpc_server
from deltachat_rpc_client import Account, DeltaChat, Message, Rpc

from . import harness

T = TypeVar("T")
START_TIMEOUT = 30.0
CONFIGURE_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
#: The binary itself: the console script of the same name is a Python wrapper around it.
SERVER = Path(deltachat_rpc_server.__file__).with_name("deltachat-rpc-server")


def bounded(call: Callable[[], T], timeout: float, what: str) -> T:
    """Run a blocking call (an RPC the client cannot time out) in a thread; wait at most ``timeout``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True, name=what)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise harness.HarnessError(f"{what}: no answer within {timeout:.0f}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Client:
    """One deltachat-rpc-server in ``node``'s namespace, with its own accounts directory."""

    def __init__(self, node: harness.Node, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.events_path = directory / "events.log"
        self._stderr = (directory / "rpc-server.log").open("ab")
        self.rpc = Rpc(
            accounts_dir=str(directory / "accounts"),
            rpc_server_path=node.ns.argv([str(SERVER)]),
            stderr=self._stderr,
        )
        bounded(self.rpc.start, START_TIMEOUT, f"deltachat-rpc-server in {node.ns.name}")
        self.manager = DeltaChat(self.rpc)
        self.users: list[ChatUser] = []

    def configure(self, name: str, link: str) -> ChatUser:
        """A new account set up from a ``dclogin:`` link, online (IMAP idling) when this returns."""
        account = self.manager.add_account()
        account.set_config("displayname", name)
        bounded(
            lambda: account.add_transport_from_qr(link), CONFIGURE_TIMEOUT, f"{name}: configure from {link}"
        )
        account.start_io()
        bounded(
            lambda: self.rpc.wait_for_all_work_done(account.id), CONFIGURE_TIMEOUT, f"{name}: going online"
        )
        self.users.append(ChatUser(self, account, name))
        return self.users[-1]

    def note(self, name: str, event: dict[str, Any]) -> None:
        with self.events_path.open("a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {name} {json.dumps(event, ensure_ascii=False)}\n")

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return harness.tail(self.events_path.read_text(errors="replace"), limit)
        except FileNotFoundError:
            return "(no events)"

    def close(self) -> None:
        """Log the events nobody waited for, then stop the server (killed if it does not stop in time)."""
        for user in self.users:
            events = self.rpc.get_queue(user.account.id)
            while not events.empty():
                self.note(user.name, events.get_nowait())
        try:
            bounded(self.rpc.close, STOP_TIMEOUT, f"stopping deltachat-rpc-server in {self.node.ns.name}")
        except harness.HarnessError:
            self.rpc.process.kill()
            self.rpc.process.wait(STOP_TIMEOUT)
        finally:
            self._stderr.close()


class ChatUser:
    """A configured account of a :class:`Client`; waits read (and log) its event stream."""

    def __init__(self, client: Client, account: Account, name: str) -> None:
        self.client = client
        self.account = account
        self.name = name
        self.address = account.get_config("configured_addr")

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first event from now on that satisfies ``predicate``; HarnessError after ``timeout``."""
        events = self.client.rpc.get_queue(self.account.id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise harness.HarnessError(
                    f"{self.name}: no {what} within {timeout:.0f}s; events so far:\n{self.client.log_tail()}"
                ) from None
            self.client.note(self.name, event)
            if predicate(event):
                return event

    def wait_kind(self, kind: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """The next event of ``kind`` whose fields (JSON names, e.g. msgId) have the given values."""
        what = f"{kind} {fields or ''}".strip()
        return self.wait(
            lambda e: e["kind"] == kind and all(e.get(k) == v for k, v in fields.items()), timeout, what
        )

    def wait_incoming(self, predicate: Callable[[Any], bool], timeout: float, what: str) -> Message:
        """The next incoming message whose snapshot satisfies ``predicate``."""

        def matches(event: dict[str, Any]) -> bool:
            if event["kind"] != "IncomingMsg":
                return False
            return predicate(self.account.get_message_by_id(event["msgId"]).get_snapshot())

        event = self.wait(matches, timeout, what)
        return self.account.get_message_by_id(event["msgId"])
