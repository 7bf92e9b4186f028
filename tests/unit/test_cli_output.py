"""What the command prints for people and for scripts: status (text and JSON), the QR code."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
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
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The QR code holds the printed dclogin: link, read back by a real decoder (zbar)."""
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
    if shutil.which("zbarimg") is not None:  # .ci/run installs it (zbar-tools)
        link = next(line.split()[-1] for line in out.splitlines() if line.startswith("Delta Chat:"))
        assert _scan(code, tmp_path) == link


#: What each character of a compact terminal QR code shows: (upper, lower) module light?
_HALVES = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def _scan(rows: list[str], directory: Path) -> str:
    """Read a QR code printed in half blocks the way a phone would: as an image, through zbar."""
    modules = [[_HALVES[char][half] for char in row] for row in rows for half in (0, 1)]
    scale = 8
    image = directory / "qr.pbm"
    lines = [" ".join("0" if light else "1" for light in line for _ in range(scale)) for line in modules]
    image.write_text(
        f"P1\n{len(modules[0]) * scale} {len(modules) * scale}\n"
        + "\n".join(line for line in lines for _ in range(scale))
        + "\n"
    )
    scan = subprocess.run(["zbarimg", "--raw", "-q", str(image)], capture_output=True, text=True, timeout=30)
    assert scan.returncode == 0, scan.stderr
    return scan.stdout.strip()
