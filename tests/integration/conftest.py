"""Fixtures for the end-to-end tests: labs of namespaces, routers and bridges; their logs on failure."""

from __future__ import annotations

import signal
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from . import harness

_STARTED = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, `kill`) becomes a KeyboardInterrupt so that teardown and atexit run
    # and no namespace or daemon outlives the run.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, interrupt)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the router and bridge logs of every lab it used."""
    report = yield
    if report.failed:
        for lab in harness.labs_active_since(item.stash.get(_STARTED, 0.0)):
            for name, text in lab.logs().items():
                report.sections.append((name, text))
    return report


@pytest.fixture(scope="session")
def network_env() -> None:
    """Root, iproute2 and /dev/net/tun; fails (never skips) without them."""
    try:
        harness.check_privileges()
    except harness.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    harness.remove_stale_namespaces()


@pytest.fixture(scope="session")
def product(network_env: None) -> None:
    """The installed `ygbridge` command and twistd (with the ygbridge plugin beside it)."""
    try:
        harness.find_command("ygbridge")
        harness.find_command("twistd")
    except harness.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def lab(network_env: None, tmp_path: Path) -> Iterator[harness.Lab]:
    """A fresh lab for one test."""
    with harness.Lab(tmp_path / "lab") as new:
        yield new


@pytest.fixture(scope="module")
def module_lab(network_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Lab]:
    """A lab shared by the tests of one module."""
    with harness.Lab(tmp_path_factory.mktemp("lab")) as new:
        yield new
