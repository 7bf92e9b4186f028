"""The files a node creates are private; commands sharing a database wait; backups and migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from clirun import ygbridge

from ygbridge.store import users
from ygbridge.store.db import SQLITE_PRAGMAS, backup_sqlite, connect, migrate
from ygbridge.store.models import MODELS, SCHEMA_VERSION, SchemaVersion, database

pytestmark = pytest.mark.usefixtures("router_away")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run as a careless service manager or shell would: files readable by everyone by default."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_database_directory_and_files_are_private_whatever_the_umask(
    tmp_path: Path, open_umask: None
) -> None:
    db = connect("sqlite:///state/node.db", tmp_path)
    users.add_user("alice", "hash", 0.0)
    state = tmp_path / "state"
    assert mode(state) == 0o700
    files = sorted(state.iterdir())
    assert [f.name for f in files] == ["node.db", "node.db-shm", "node.db-wal"]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    db.close()


def test_init_writes_a_private_certificate_and_key(
    config_file: Path, open_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ygbridge("--config", str(config_file), "init") == 0
    state = config_file.parent / "state"
    created = {f.name: mode(f) for f in state.iterdir()}
    assert created == {
        "ygbridge.db": 0o600,
        "ygbridge.db-wal": 0o600,
        "ygbridge.db-shm": 0o600,
        "ygbridge-cert.pem": 0o600,
        "ygbridge-key.pem": 0o600,
    }
    assert mode(state) == 0o700


def test_user_add_without_a_terminal_gives_a_hint_not_a_traceback(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert ygbridge("--config", str(config_file), "user", "add", "bob") == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "ygbridge: no terminal to ask for the password: give it on standard input with --password-stdin"
    ]


def test_a_writer_waits_for_another_command_holding_the_write_lock(tmp_path: Path) -> None:
    connect("sqlite:///node.db", tmp_path).close()
    other = sqlite3.connect(tmp_path / "node.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO schema_version (version) VALUES (99)")
    other.execute("DELETE FROM schema_version WHERE version = 99")
    release = threading.Timer(0.5, other.execute, ("COMMIT",))
    release.start()
    try:
        connect("sqlite:///node.db", tmp_path)  # checks the schema in a write transaction
        users.add_user("carol", "hash", 0.0)
    finally:
        release.join()
        other.close()
    assert users.list_users() == ["carol"]


def test_backup_is_a_private_consistent_copy(tmp_path: Path, open_umask: None) -> None:
    db = connect("sqlite:///node.db", tmp_path)
    users.add_user("dave", "hash", 0.0)
    backup_sqlite(db, tmp_path / "copy.db")
    assert mode(tmp_path / "copy.db") == 0o600
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT name FROM user").fetchall() == [("dave",)]
    copy.close()
    with pytest.raises(Exception, match="exists already"):
        backup_sqlite(db, tmp_path / "copy.db")


def test_backup_command(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = config_file.parent / "backup.db"
    assert ygbridge("--config", str(config_file), "backup", str(target)) == 0
    assert "backed up" in capsys.readouterr().out
    assert mode(target) == 0o600
    assert ygbridge("--config", str(config_file), "backup", str(target)) == 1
    assert "exists already" in capsys.readouterr().err


def test_a_migration_backs_up_the_old_database_first(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    database.initialize(db)
    db.create_tables(MODELS)
    db.execute_sql('ALTER TABLE "outgoing_recipient" DROP COLUMN "warned"')
    SchemaVersion.create(version=2)
    backup = migrate(db)
    assert backup is not None and backup.name.startswith("old.db.schema-2-") and mode(backup) == 0o600
    assert SchemaVersion.get().version == SCHEMA_VERSION
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    copy.close()
    assert migrate(db) is None  # nothing to migrate, nothing copied
    assert len(list(tmp_path.glob("old.db.schema-*"))) == 1


def test_missing_postgresql_driver_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peewee, "psycopg", None)
    monkeypatch.setattr(peewee, "psycopg2", None)
    path = tmp_path / "pg.ini"
    path.write_text("[storage]\ndatabase = postgresql://u:secret@127.0.0.1:1/mail\n")
    with pytest.raises(Exception, match=r"pip install 'ygbridge\[postgresql\]'"):
        connect("postgresql://u:secret@127.0.0.1:1/mail", tmp_path)
