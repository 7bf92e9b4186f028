"""Every database connection the service opens commits to disk before it answers (issue 9)."""

import threading
from pathlib import Path

from ygbridge.store.db import connect
from ygbridge.store.models import database

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def _settings() -> tuple[int, str]:
    database.connect(reuse_if_open=True)
    synchronous = database.execute_sql("PRAGMA synchronous").fetchone()[0]
    journal = database.execute_sql("PRAGMA journal_mode").fetchone()[0]
    return synchronous, journal


def test_every_connection_syncs_each_commit(tmp_path: Path) -> None:
    connect("sqlite:///bridge.db", tmp_path)
    try:
        assert _settings() == (FULL, "wal")  # the connection that migrated
        seen: list[tuple[int, str]] = []
        other = threading.Thread(target=lambda: seen.append(_settings()))  # as the DB thread opens its own
        other.start()
        other.join(timeout=10)
        assert seen == [(FULL, "wal")]
    finally:
        database.close()
