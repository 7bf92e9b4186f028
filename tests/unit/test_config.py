"""The configuration file, the twistd plugin and the command's parser."""

from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from ygbridge.cli import parser
from ygbridge.config import DEFAULT_ADMIN_ENDPOINTS, load_config
from ygbridge.errors import ConfigError
from ygbridge.limits import Limits, limit_kinds

EXAMPLE = Path(__file__).parents[2] / "conf" / "ygbridge.ini"


def test_example_config_matches_the_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config.admin == DEFAULT_ADMIN_ENDPOINTS
    assert config.mesh_port == 25
    assert config.submission_listen == ("tcp:1025:interface=127.0.0.1",)
    assert config.imap_listen == ("tcp:1143:interface=127.0.0.1",)
    assert config.database == "sqlite:////var/lib/ygbridge/ygbridge.db"
    assert (config.retry_initial, config.retry_max, config.retry_horizon) == (5, 3600, 5 * 86400)
    assert config.max_message_size == 32 * 1024 * 1024
    assert config.user_cache == 10


def test_values_and_relative_database_path(tmp_path: Path) -> None:
    path = tmp_path / "node.ini"
    path.write_text(
        "[yggdrasil]\nadmin = unix:///run/a.sock tcp://127.0.0.1:9001\n"
        "[imap]\nlisten = tcp:1143:interface=127.0.0.1\n  tcp:2143\n"
        "[submission]\nlisten = none\nlisten_tls = tcp:465\n"
        "[storage]\ndatabase = sqlite:///data/mail.db\n"
        "[delivery]\nretry_initial = 1s\nretry_horizon = 2h ; inline comment\nmax_message_size = 10MiB\n"
        "user_cache = 0\n"
    )
    config = load_config(path)
    assert config.admin == ("unix:///run/a.sock", "tcp://127.0.0.1:9001")
    assert config.imap_listen == ("tcp:1143:interface=127.0.0.1", "tcp:2143")
    assert (config.submission_listen, config.submission_listen_tls) == ((), ("tcp:465",))
    assert (config.retry_initial, config.retry_horizon, config.max_message_size) == (
        1,
        7200,
        10 * 1024 * 1024,
    )
    assert config.database_file == tmp_path / "data" / "mail.db"
    assert config.user_cache == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mesh]\nport = twenty-five\n", "[mesh] port"),
        ("[delivery]\nretry_max = soon\n", "retry_max"),
        ("nonsense", "INI"),
        ("[yggdrasil]\nadmin = none\n", "[yggdrasil] admin"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.ini")


def test_twistd_finds_the_plugin() -> None:
    assert "ygbridge" in {maker.tapname for maker in getPlugins(IServiceMaker)}


def test_command_line_matches_the_design() -> None:
    args = parser().parse_args(["--config", "f.ini", "user", "add", "alice", "--password-stdin"])
    assert (args.config, args.name, args.password_stdin) == ("f.ini", "alice", True)
    for argv in (["init"], ["user", "list"], ["user", "del", "x"], ["address", "x"], ["status"]):
        parser().parse_args(argv)


def test_limits_section(tmp_path: Path) -> None:
    path = tmp_path / "node.ini"
    path.write_text("[limits]\nrecipients = 5\nmesh_bytes_per_hour = 1MiB\nsmtp_idle = 2m\n")
    limits = load_config(path).limits
    assert (limits.recipients, limits.mesh_bytes_per_hour, limits.smtp_idle) == (5, 1024 * 1024, 120.0)
    assert limits.imap_line == 64 * 1024  # untouched keys keep their defaults


@pytest.mark.parametrize(
    "line, error",
    [("recipents = 5", "unknown key"), ("recipients = many", "whole number"), ("smtp_idle = -1", "negative")],
)
def test_bad_limits_are_named(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "node.ini"
    path.write_text(f"[limits]\n{line}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_example_config_documents_every_limit_with_its_default() -> None:
    text = EXAMPLE.read_text()
    assert load_config(EXAMPLE).limits == Limits()
    for key in limit_kinds():
        assert f"\n{key} = " in text, f"conf/ygbridge.ini does not document [limits] {key}"
