"""Hypothesis profiles (quick by default, ``HYPOTHESIS_PROFILE=thorough`` for CI's long run), the
store backends (the store, search and IMAP tests run on SQLite and on a real PostgreSQL), and the
command-line tests' configuration file and absent router."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ygbridge import cli
from ygbridge.errors import RouterError
from ygbridge.testing import postgresql

settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Test modules whose store fixtures run once per backend.
BOTH_BACKENDS = {
    "test_store_messages",
    "test_store_queue",
    "test_mailboxes",
    "test_imap",
    "test_imap_messages",
    "test_imap_search",
    "test_imap_sessions",
    "test_imap_listing",
}
#: Set (by .ci/run) to make a missing PostgreSQL server a failure instead of a skip.
REQUIRED = "YGBRIDGE_TEST_POSTGRESQL"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" in metafunc.fixturenames and metafunc.module.__name__ in BOTH_BACKENDS:
        metafunc.parametrize("store_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    if postgresql.server_binaries() is None and not os.environ.get(REQUIRED):
        pytest.skip("no PostgreSQL server installed (apt install postgresql)")
    with postgresql.running_server() as url:
        yield url


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite``, or the URL of the test PostgreSQL database."""
    backend = getattr(request, "param", "sqlite")
    return "sqlite" if backend == "sqlite" else str(request.getfixturevalue("postgresql_url"))


@pytest.fixture
def router_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router is not running (and the reactor, which runs once per process, is never used)."""

    async def away(reactor: object, config: object) -> None:
        raise RouterError("no router at unix:///nonexistent/ygbridge-test.sock")

    monkeypatch.setattr(cli, "_node", away)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A configuration naming an absent router, with the database in ``state/`` beside it."""
    path = tmp_path / "ygbridge.ini"
    path.write_text(
        "[yggdrasil]\nadmin = unix:///nonexistent/ygbridge-test.sock\n"
        "[storage]\ndatabase = sqlite:///state/ygbridge.db\n"
    )
    return path
