"""The twistd entry point's two ways to refuse to start: a clear message, no traceback."""

from pathlib import Path

import pytest
from twisted.python import usage

from ygbridge import logs, tap


def test_an_unreadable_configuration_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match="cannot read configuration .*absent.ini"):
        tap.Options().parseOptions(["--config", str(tmp_path / "absent.ini")])


def test_a_database_it_cannot_open_stops_twistd_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ygbridge.ini"
    config.write_text("[storage]\ndatabase = mysql://localhost/mail\n")
    monkeypatch.setattr(logs, "configure", lambda level: None)
    options = tap.Options()
    options.parseOptions(["--config", str(config)])
    with pytest.raises(SystemExit, match=r"database = 'mysql://localhost/mail': expected sqlite"):
        tap.makeService(options)
