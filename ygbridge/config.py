"""The INI configuration file and its defaults, in one place (see conf/ygbridge.ini)."""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ygbridge.errors import ConfigError
from ygbridge.limits import Limits, limit_kinds

#: Admin endpoints tried in order when none is configured (Debian, upstream default, Windows/others).
DEFAULT_ADMIN_ENDPOINTS = (
    "unix:///var/run/yggdrasil/yggdrasil.sock",
    "unix:///var/run/yggdrasil.sock",
    "tcp://localhost:9001",
)
DEFAULT_DATABASE = "sqlite:////var/lib/ygbridge/ygbridge.db"
#: The configuration file of the ``ygbridge`` command and the twistd plugin (the command also
#: reads ``$YGBRIDGE_CONFIG``).
DEFAULT_CONFIG = "/etc/ygbridge/ygbridge.ini"


def sqlite_path(url: str, base_dir: Path) -> Path | None:
    """The file of a ``sqlite:///`` URL (relative to ``base_dir``), or None for other URLs."""
    if not url.startswith("sqlite:"):
        return None
    path = Path(unquote(urlsplit(url).path[1:] if url.startswith("sqlite:///") else url[7:]))
    return path if path.is_absolute() else base_dir / path


@dataclass(frozen=True)
class Config:
    """Every setting of a ygbridge node, with its default."""

    path: Path | None = None
    admin: tuple[str, ...] = DEFAULT_ADMIN_ENDPOINTS
    poll_interval: float = 2.0
    mesh_port: int = 25
    foreign_from: str = "refuse"
    submission_listen: tuple[str, ...] = ("tcp:1025:interface=127.0.0.1",)
    submission_listen_tls: tuple[str, ...] = ()
    imap_listen: tuple[str, ...] = ("tcp:1143:interface=127.0.0.1",)
    imap_listen_tls: tuple[str, ...] = ()
    #: Endpoints serving Thunderbird-style autoconfig (config-v1.1.xml) to LAN clients; none by default.
    autoconfig_listen: tuple[str, ...] = ()
    tls_certificate: str | None = None
    tls_key: str | None = None
    allow_plaintext: bool = False
    database: str = DEFAULT_DATABASE
    #: Where the files ygbridge makes itself go (the self-signed TLS pair); see :attr:`state_dir`.
    state_directory: str | None = None
    retry_initial: float = 5.0
    retry_max: float = 3600.0
    retry_horizon: float = 5 * 86400.0
    delay_warning: float = 0.0
    queue_interval: float = 5.0
    max_message_size: int = 32 * 1024 * 1024
    connections_per_node: int = 4
    connections: int = 32
    #: Seconds an existing user, once looked up for RCPT, is taken as existing (0: always look up).
    user_cache: float = 10.0
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the file are resolved against."""
        return self.path.parent if self.path else Path.cwd()

    @property
    def database_file(self) -> Path | None:
        """The SQLite database file; None for PostgreSQL."""
        return sqlite_path(self.database, self.base_dir)

    @property
    def state_dir(self) -> Path:
        """``[storage] state_directory``; without it, the SQLite database's directory, or for other
        databases the configuration file's."""
        if self.state_directory is not None:
            return self.base_dir / self.state_directory
        database = self.database_file
        return database.parent if database is not None else self.base_dir


def _words(value: str) -> tuple[str, ...]:
    """Space, comma or line separated values; ``none`` for none at all."""
    if value.strip().lower() == "none":
        return ()
    return tuple(v for v in value.replace(",", " ").split() if v)


def _duration(value: str, key: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ConfigError(f"{key} = {value!r}: expected a duration such as 30s, 10m, 1h or 5d") from None


def _size(value: str, key: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ConfigError(f"{key} = {value!r}: expected a size such as 32MiB") from None


def _bool(value: str, key: str) -> bool:
    text = value.strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0"):
        return False
    raise ConfigError(f"{key} = {value!r}: expected yes or no")


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key} = {value!r}: expected a whole number") from None


def load_config(path: str | Path) -> Config:
    """Read a configuration file; missing keys take their defaults."""
    path = Path(path).resolve()
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"configuration {path} is not a valid INI file: {exc}") from None

    def get(section: str, key: str) -> str | None:
        value = parser.get(section, key, fallback=None)
        return value.strip() if value is not None and value.strip() else None

    values: dict[str, object] = {"path": path}
    if admin := get("yggdrasil", "admin"):
        values["admin"] = _words(admin)
        if not values["admin"]:
            raise ConfigError("[yggdrasil] admin = none: name an admin endpoint, or leave the key out")
    if poll := get("yggdrasil", "poll_interval"):
        values["poll_interval"] = _duration(poll, "[yggdrasil] poll_interval")
    if port := get("mesh", "port"):
        values["mesh_port"] = _int(port, "[mesh] port")
    if foreign := get("mesh", "foreign_from"):
        if foreign.lower() not in ("refuse", "warn"):
            raise ConfigError(f"[mesh] foreign_from = {foreign!r}: expected refuse or warn")
        values["foreign_from"] = foreign.lower()
    for section in ("submission", "imap"):
        if listen := get(section, "listen"):
            values[f"{section}_listen"] = _words(listen)
        if listen := get(section, "listen_tls"):
            values[f"{section}_listen_tls"] = _words(listen)
    if listen := get("autoconfig", "listen"):
        values["autoconfig_listen"] = _words(listen)
    values["tls_certificate"] = get("tls", "certificate")
    values["tls_key"] = get("tls", "key")
    if values["tls_key"] and not values["tls_certificate"]:
        raise ConfigError("[tls] key is set without [tls] certificate: set both, or neither")
    if allow := get("tls", "allow_plaintext"):
        values["allow_plaintext"] = _bool(allow, "[tls] allow_plaintext")
    if database := get("storage", "database"):
        values["database"] = database
    values["state_directory"] = get("storage", "state_directory")
    for key, attr in (
        ("retry_initial", "retry_initial"),
        ("retry_max", "retry_max"),
        ("retry_horizon", "retry_horizon"),
        ("delay_warning", "delay_warning"),
        ("queue_interval", "queue_interval"),
        ("user_cache", "user_cache"),
    ):
        if value := get("delivery", key):
            values[attr] = _duration(value, f"[delivery] {key}")
    for key in ("connections_per_node", "connections"):
        if value := get("delivery", key):
            count = _int(value, f"[delivery] {key}")
            if count < 1:
                raise ConfigError(f"[delivery] {key} = {value}: at least 1")
            values[key] = count
    if size := get("delivery", "max_message_size"):
        values["max_message_size"] = _size(size, "[delivery] max_message_size")
    if level := get("log", "level"):
        values["log_level"] = level.lower()
    values["limits"] = _limits(parser)
    return Config(**values)  # type: ignore[arg-type]  # each value parsed to its field's type above


def _limits(parser: configparser.ConfigParser) -> Limits:
    """The ``[limits]`` section; an unknown key is an error, since a misspelt bound would not bind."""
    if not parser.has_section("limits"):
        return Limits()
    kinds = limit_kinds()
    parse = {"count": _int, "size": _size, "duration": _duration}
    values: dict[str, float] = {}
    for key, text in parser.items("limits"):
        if key not in kinds:
            raise ConfigError(f"[limits] {key}: unknown key; known keys are {', '.join(kinds)}")
        if text.strip():
            value = parse[kinds[key]](text.strip(), f"[limits] {key}")
            if value < 0:
                raise ConfigError(f"[limits] {key} = {text.strip()!r}: must not be negative")
            values[key] = value
    return Limits(**values)  # type: ignore[arg-type]  # each value parsed to its field's kind above
