"""Hypothesis profiles (quick by default, ``HYPOTHESIS_PROFILE=thorough`` for CI's long run) and the
store backends: the store, search and IMAP tests run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from ygbridge.testing import postgresql

settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Test modules whose store fixtures run once per backend.
BOTH_BACKENDS = {
    "test_store_messages",
    "test_mailboxes",
    "test_imap",
    "test_imap_messages",
    "test_imap_search",
    "test_imap_sessions",
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
