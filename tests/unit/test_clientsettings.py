"""Client settings and the dclogin: link printed for the configured listeners."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ygbridge.cli import parser
from ygbridge.clientsettings import ClientSettings, Listener, listeners, parse_listener, preferred
from ygbridge.errors import ConfigError

ADDRESS = "alice@aibs5ujkumpjftxwooamuaooi4.meship"


@pytest.mark.parametrize(
    ("description", "implicit", "expected"),
    [
        ("tcp:1143:interface=127.0.0.1", False, Listener("127.0.0.1", 1143, False)),
        ("tcp:port=1025:interface=192.168.1.10", False, Listener("192.168.1.10", 1025, False)),
        ("tcp6:993:interface=\\:\\:1", True, Listener("::1", 993, True)),
        ("tcp:465", True, Listener(None, 465, True)),
        ("tcp:1143:interface=0.0.0.0", False, Listener(None, 1143, False)),
        ("ssl:993:privateKey=k.pem:interface=10.0.0.1", False, Listener("10.0.0.1", 993, True)),
        ("unix:/run/ygbridge/imap.sock", False, None),
    ],
)
def test_listener_descriptions(description: str, implicit: bool, expected: Listener | None) -> None:
    assert parse_listener(description, implicit) == expected


def test_a_listener_without_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no TCP port"):
        parse_listener("tcp:interface=127.0.0.1", False)


def test_implicit_tls_is_preferred_and_host_filters() -> None:
    found = listeners(("tcp:1143:interface=127.0.0.1", "tcp:1143:interface=10.1.1.1"), ("tcp:993",))
    assert preferred(found, None, "imap") == Listener(None, 993, True)
    assert preferred(found[:2], "10.1.1.1", "imap") == Listener("10.1.1.1", 1143, False)
    with pytest.raises(ConfigError, match=r"accepting connections at 10.9.9.9 in \[imap\]"):
        preferred(found[:2], "10.9.9.9", "imap")


def _settings(**changes: object) -> ClientSettings:
    values: dict[str, object] = {
        "address": ADDRESS,
        "user": "alice",
        "imap": listeners(("tcp:1143:interface=127.0.0.1",), ("tcp:993:interface=127.0.0.1",)),
        "smtp": listeners(("tcp:1025:interface=127.0.0.1",), ()),
        "self_signed": True,
        "fingerprint": "AB:CD",
        "host": None,
        "machine": "box",
    }
    values.update(changes)
    return ClientSettings(**values)  # type: ignore[arg-type]


def _link(lines: list[str]) -> tuple[str, dict[str, str]]:
    """Decode the dclogin: link as Delta Chat does (scheme, address before '?', query pairs)."""
    link = next(line for line in lines if line.startswith("Delta Chat:")).split()[-1]
    assert link.startswith("dclogin:")
    parts = urlsplit(link.replace("dclogin:", "dclogin://", 1))
    query = {key: values[0] for key, values in parse_qs(parts.query, strict_parsing=True).items()}
    return unquote(parts.netloc), query


def test_settings_list_every_listener_and_link_the_preferred_ones() -> None:
    lines = _settings().lines("p&ss=w rd?")
    assert "IMAP:        127.0.0.1 port 1143, STARTTLS; 127.0.0.1 port 993, SSL/TLS" in lines
    assert "SMTP:        127.0.0.1 port 1025, STARTTLS" in lines
    assert any("self-signed" in line and "AB:CD" in line for line in lines)
    address, query = _link(lines)
    assert address == ADDRESS
    assert query == {
        "v": "1",
        "p": "p&ss=w rd?",
        "ih": "127.0.0.1",
        "ip": "993",
        "is": "ssl",
        "sh": "127.0.0.1",
        "sp": "1025",
        "ss": "starttls",
        "ic": "3",
    }


def test_ca_signed_certificate_keeps_strict_checks_and_wildcards_take_the_host() -> None:
    wildcard = {"imap": listeners(("tcp:1143",), ()), "smtp": listeners(("tcp:1025",), ())}
    _, query = _link(_settings(**wildcard, self_signed=False).lines("pw"))
    assert "ic" not in query
    assert (query["ih"], query["sh"]) == ("box", "box")
    _, query = _link(_settings(**wildcard, host="10.1.1.1").lines("pw"))
    assert (query["ih"], query["sh"]) == ("10.1.1.1", "10.1.1.1")


def test_login_link_command() -> None:
    args = parser().parse_args(["login-link", "alice", "--password-stdin", "--host", "192.168.1.10"])
    assert (args.name, args.password_stdin, args.host) == ("alice", True, "192.168.1.10")
