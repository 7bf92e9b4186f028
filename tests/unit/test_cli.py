"""The `ygbridge` command: what `status` prints about the router, and a reader that goes away."""

import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from ygbridge import cli
from ygbridge.router.state import NodeIdentity, NodeStatus, Peer, TunState
from ygbridge.store import models, queue
from ygbridge.store.db import connect
from ygbridge.store.models import User
from ygbridge.testing.store import memory_database

KEY = bytes.fromhex("99098b4ac8f782f105094bba691c62dee5e63d1ab7b2dfe24c7c31349b4b4ab4")
ADDRESS = IPv6Address("200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7")
MISMATCH = "failed to connect: incompatible version (local 0.5, remote 0.4)"


def _status(build: tuple[str, str], api: str, peers: tuple[Peer, ...]) -> NodeStatus:
    identity = NodeIdentity(KEY, ADDRESS, IPv6Network("300:cdec:e96a:6e10::/64"), *build, api=api)
    return NodeStatus(identity, TunState(True, "tun0", 65535), peers, ())


def test_status_shows_each_peer_and_the_routers_reason(capsys: pytest.CaptureFixture[str]) -> None:
    memory_database()
    peers = (
        Peer(None, None, False, "tcp://10.231.1.2:7301", MISMATCH),
        Peer(KEY, ADDRESS, True, "tcp://10.231.2.2:7301"),
    )
    cli._print_node(_status(("yggdrasil", "0.5.12"), "0.5", peers))
    out = capsys.readouterr().out
    assert "router:   yggdrasil 0.5.12\n" in out
    assert "peers:    1 up, 1 down\n" in out
    assert f"  down  tcp://10.231.1.2:7301  ({MISMATCH})\n" in out
    assert f"  up    {ADDRESS}  tcp://10.231.2.2:7301\n" in out


def test_status_on_debians_047_says_what_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    memory_database()
    cli._print_node(_status(("unknown", "unknown"), "0.4", ()))
    out = capsys.readouterr().out
    assert "router:   yggdrasil (version not reported; admin API 0.4)\n" in out
    assert "unknown" not in out


def _run_with_closed_stdout(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    config = tmp_path / "c.ini"
    config.write_text(
        f"[storage]\ndatabase = sqlite:///{tmp_path / 'db.sqlite'}\n"
        f"[yggdrasil]\nadmin = unix://{tmp_path / 'no-router.sock'}\n"
    )
    read, write = os.pipe()
    os.close(read)  # the reader went away before the first line, as `| head -0` would
    try:
        return subprocess.run(
            [sys.executable, "-m", "ygbridge.cli", "--config", str(config), *args],
            input=b"a-Password-1\n",
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    added = _run_with_closed_stdout(tmp_path, "user", "add", "bob", "--password-stdin")
    assert added.returncode == cli.EXIT_BROKEN_PIPE, added.stderr
    assert added.stderr == b""
    listed = _run_with_closed_stdout(tmp_path, "user", "list")
    assert listed.returncode == cli.EXIT_BROKEN_PIPE and listed.stderr == b""


def test_user_list_into_head_1_stops_quietly(tmp_path: Path) -> None:
    """``ygbridge user list | head -1`` with 300 KB of names, several pipe buffers: head reads
    the first line and quits while the command still has lines to write."""
    database = tmp_path / "db.sqlite"
    config = tmp_path / "c.ini"
    config.write_text(f"[storage]\ndatabase = sqlite:///{database}\n")
    names = [f"user-{n:05d}-" + "x" * 50 for n in range(5000)]
    connect(f"sqlite:///{database}", tmp_path)
    try:
        with models.database.atomic():
            User.insert_many([{"name": n, "password_hash": b"x", "created": 0.0} for n in names]).execute()
    finally:
        models.database.close()
    with (tmp_path / "stderr").open("wb") as stderr:
        ygbridge = subprocess.Popen(
            [sys.executable, "-m", "ygbridge.cli", "--config", str(config), "user", "list"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        head = subprocess.Popen(["head", "-1"], stdin=ygbridge.stdout, stdout=subprocess.PIPE)
        assert ygbridge.stdout is not None
        ygbridge.stdout.close()  # head is the only reader
        first, _ = head.communicate(timeout=60)
        status = ygbridge.wait(60)
    assert first == names[0].encode() + b"\n" and head.returncode == 0
    assert status == cli.EXIT_BROKEN_PIPE
    assert (tmp_path / "stderr").read_bytes() == b""


def test_router_down_is_said_once(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text(
        f"[storage]\ndatabase = sqlite:///{tmp_path / 'db.sqlite'}\n"
        f"[yggdrasil]\nadmin = unix://{tmp_path / 'no-router.sock'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "ygbridge.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert (result.stdout + result.stderr).count("cannot reach the yggdrasil admin socket") == 1
    assert "router:   unreachable" in result.stdout and "queue:    0 recipient(s)" in result.stdout


def test_queue_lines_name_the_last_error_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    memory_database()
    queue.enqueue("a@x.meship", b"m\r\n", None, [("b@y.meship", "203::1")], 0)
    queue.enqueue("a@x.meship", b"m\r\n", None, [("c@z.meship", "203::2")], 0)
    [(rid, _)] = queue.next_due("203::1", 1.0).recipients  # type: ignore[union-attr]
    queue.postpone([rid], "peer down: incompatible version (no answer from 203::1 in time)", 1e12)
    cli._print_queue(time.time())
    out = capsys.readouterr().out
    assert "queue:    2 recipient(s) waiting\n" in out
    assert "  203::1  1 waiting, next try in " in out
    assert "last error: peer down: incompatible version (no answer from 203::1 in time)\n" in out
    assert "  203::2  1 waiting, next try in 0s, last error: none yet\n" in out


def test_an_error_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ygbridge.cli", "--config", str(tmp_path / "absent.ini"), "user", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ygbridge: cannot read configuration") and result.stderr.count("\n") == 1


def test_ctrl_c_while_the_router_is_asked_is_exit_status_130(tmp_path: Path) -> None:
    path = tmp_path / "router.sock"
    config = tmp_path / "c.ini"
    config.write_text(
        f"[storage]\ndatabase = sqlite:///{tmp_path / 'db.sqlite'}\n[yggdrasil]\nadmin = unix://{path}\n"
    )
    with socket.socket(socket.AF_UNIX) as router:
        router.bind(str(path))
        router.listen(1)
        router.settimeout(60)
        command = subprocess.Popen(
            [sys.executable, "-m", "ygbridge.cli", "--config", str(config), "status"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            connection, _ = router.accept()
            with connection:
                connection.settimeout(60)
                assert b"getSelf" in connection.recv(4096)  # asked, under the running reactor: no answer
                command.send_signal(signal.SIGINT)
                out, err = command.communicate(timeout=60)
        finally:
            command.kill()
    assert command.returncode == cli.EXIT_INTERRUPTED, (out, err)
    assert b"Traceback" not in err
