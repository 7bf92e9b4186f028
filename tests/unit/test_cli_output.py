"""What the command prints for people and for scripts: status (text and JSON), the QR code."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from clirun import ygbridge

from ygbridge import cli

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")


pytestmark = pytest.mark.usefixtures("router_away")


def test_status_json_while_the_router_is_away(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ygbridge("--config", str(config_file), "status", "--json") == 1
    out, err = capsys.readouterr()
    status = json.loads(out)
    assert status["node"] is None and "ygbridge-test.sock" in status["router_error"]
    assert status["queue"] == [] and status["identities"] == []
    assert err == ""


def test_status_says_the_router_is_away_once(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ygbridge("--config", str(config_file), "status") == 1
    out, err = capsys.readouterr()
    assert (out + err).count("ygbridge-test.sock") == 1
    assert out.startswith("router:   unreachable")


def test_login_link_prints_a_qr_code_on_request(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(config_file)
    assert ygbridge("--config", config, "init") == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("secret\n"))
    assert ygbridge("--config", config, "user", "add", "alice", "--password-stdin") == 0
    plain = capsys.readouterr().out
    assert "█" not in plain  # not a terminal, no --qr: the link only

    async def node(reactor: object, config: object) -> object:
        return SimpleNamespace(identity=SimpleNamespace(address=NODE))

    monkeypatch.setattr(cli, "_node", node)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("secret\n"))
    assert ygbridge("--config", config, "login-link", "alice", "--password-stdin", "--qr") == 0
    out = capsys.readouterr().out
    assert "dclogin:alice@" in out
    code = [line for line in out.splitlines() if "█" in line]
    assert len(code) > 15 and len({len(line) for line in code}) == 1  # a square block of rows
