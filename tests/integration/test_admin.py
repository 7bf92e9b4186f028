"""The `ygbridge` command against real routers of both lines (0.4.7 and 0.5.12)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import harness

VERSIONS = ["0.4.7", "0.5.12"]


@pytest.fixture(scope="module", params=VERSIONS)
def node(
    request: pytest.FixtureRequest, product: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.Node]:
    """One node (router only, no peers) whose bridge is initialised with the user alice."""
    version: str = request.param
    with harness.Lab(tmp_path_factory.mktemp(f"admin-{version}")) as lab:
        node = lab.add_node("n", version)
        lab.start_routers()
        node.bridge.setup(users={"alice": "alice-Secret-1"})
        yield node


def test_address_names_the_routers_node(node: harness.Node) -> None:
    result = node.bridge.cli("address", "alice")
    assert result.stdout.strip() == f"alice@{harness.meshname_domain(node.address)}"


def test_status_shows_address_and_key(node: harness.Node) -> None:
    result = node.bridge.cli("status")
    assert str(node.address) in result.stdout
    assert node.router.key and node.router.key in result.stdout


def test_status_json_for_scripts(node: harness.Node) -> None:
    status = json.loads(node.bridge.cli("status", "--json").stdout)
    assert status["router_error"] is None
    assert status["node"]["address"] == str(node.address)
    assert status["node"]["domain"] == harness.meshname_domain(node.address)
    assert status["node"]["key"] == node.router.key
    assert status["node"]["tun"]["enabled"] is True
    assert status["node"]["peers"] == []  # a router without peers
    assert status["queue"] == []


def test_status_says_what_is_known_of_the_router(node: harness.Node) -> None:
    """Debian's 0.4.7 reports build name and version "unknown": say so in words."""
    line = next(line for line in node.bridge.status().splitlines() if line.startswith("router:"))
    if node.router.version == "0.4.7":
        assert line == "router:   yggdrasil (version not reported; admin API 0.4)"
    else:
        assert line == f"router:   yggdrasil {node.router.version}"


def test_user_list(node: harness.Node) -> None:
    assert "alice" in node.bridge.cli("user", "list").stdout.split()


@pytest.mark.parametrize("version", VERSIONS)
def test_refuses_to_start_without_tun(product: None, tmp_path: Path, version: str) -> None:
    with harness.Lab(tmp_path / "lab") as lab:
        node = lab.add_node("n", version, ifname="none")
        lab.start_routers()
        assert node.router.tun().get("enabled") is False
        node.bridge.setup()
        status, output, events = node.bridge.run_until_exit()
    assert status != 0, output
    assert any(e.get("event") == "router.tun_disabled" for e in events), output
    # a sentence for the operator, not just the event name
    assert re.search(r"\bTUN\b", output), output
