"""What a user's mail client needs: the client listeners as settings, and Delta Chat's ``dclogin:`` link."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from ygbridge.errors import ConfigError

_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Listener:
    """A TCP endpoint clients connect to; ``host`` is None when it listens on every interface."""

    host: str | None
    port: int
    implicit_tls: bool

    @property
    def security(self) -> str:
        """The ``dclogin:`` name of the connection security clients use here."""
        return "ssl" if self.implicit_tls else "starttls"

    def describe(self, host: str) -> str:
        """How a person should enter this port in a mail client: host, port and security."""
        return f"{host} port {self.port}, {'SSL/TLS' if self.implicit_tls else 'STARTTLS'}"


def _fields(description: str) -> list[str]:
    """Split a Twisted endpoint description at unescaped colons (``\\:`` is a colon)."""
    fields, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]


def parse_listener(description: str, implicit_tls: bool) -> Listener | None:
    """The client-facing side of a ``tcp:``/``tcp6:``/``ssl:`` endpoint; None for other kinds."""
    kind, *fields = _fields(description)
    if kind.lower() not in ("tcp", "tcp6", "ssl"):
        return None
    positional = [f for f in fields if "=" not in f]
    named = dict(f.split("=", 1) for f in fields if "=" in f)
    interface = named.get("interface", positional[1] if kind.lower() != "ssl" and len(positional) > 1 else "")
    try:
        port = int(named.get("port") or positional[0])
    except (IndexError, ValueError):
        raise ConfigError(f"listener {description!r}: no TCP port in it") from None
    host = None if interface in _WILDCARDS else interface
    return Listener(host, port, implicit_tls or kind.lower() == "ssl")


def listeners(plain: tuple[str, ...], implicit_tls: tuple[str, ...]) -> list[Listener]:
    """The TCP listeners among a protocol's STARTTLS and implicit-TLS endpoint descriptions."""
    found = [parse_listener(d, False) for d in plain] + [parse_listener(d, True) for d in implicit_tls]
    return [listener for listener in found if listener is not None]


def preferred(candidates: list[Listener], host: str | None, section: str) -> Listener:
    """The listener a client should use (implicit TLS first, RFC 8314), reachable at ``host`` if given."""
    usable = [c for c in candidates if host is None or c.host in (None, host)]
    if not usable:
        where = f" accepting connections at {host}" if host else ""
        raise ConfigError(f"no TCP listener{where} in [{section}] listen or listen_tls")
    return sorted(usable, key=lambda listener: not listener.implicit_tls)[0]


def dclogin_link(
    address: str,
    password: str,
    imap: tuple[str, Listener],
    smtp: tuple[str, Listener],
    accept_invalid_certificate: bool,
) -> str:
    """Delta Chat's ``dclogin:`` account link for ``(host, listener)`` pairs of IMAP and SMTP."""
    (imap_host, imap_listener), (smtp_host, smtp_listener) = imap, smtp
    params = {
        "v": "1",
        "p": password,
        "ih": imap_host,
        "ip": str(imap_listener.port),
        "is": imap_listener.security,
        "sh": smtp_host,
        "sp": str(smtp_listener.port),
        "ss": smtp_listener.security,
    }
    if accept_invalid_certificate:
        params["ic"] = "3"  # accept invalid certificates (3 rather than 2: older cores know only 3)
    return f"dclogin:{quote(address, safe='@')}?{urlencode(params, quote_via=quote)}"


@dataclass(frozen=True)
class ClientSettings:
    """Everything a user's client needs, for one node's configuration."""

    address: str
    user: str
    imap: list[Listener]
    smtp: list[Listener]
    self_signed: bool
    fingerprint: str
    #: Where clients reach this machine (``--host``): only listeners there are offered.
    host: str | None
    #: This machine's name, for listeners on every interface when ``host`` is not given.
    machine: str

    def _host(self, listener: Listener) -> str:
        return listener.host or self.host or self.machine

    def dclogin(self, password: str) -> str:
        """The ``dclogin:`` link for the preferred listeners."""
        imap = preferred(self.imap, self.host, "imap")
        smtp = preferred(self.smtp, self.host, "submission")
        return dclogin_link(
            self.address, password, (self._host(imap), imap), (self._host(smtp), smtp), self.self_signed
        )

    def lines(self, password: str) -> list[str]:
        """The settings as text, ending with the ``dclogin:`` link for the preferred listeners."""
        link = self.dclogin(password)
        kind = (
            "self-signed (your client asks to accept it: compare the fingerprint)"
            if self.self_signed
            else "CA-signed"
        )
        return [
            f"address:     {self.address}",
            f"login:       {self.user} (or {self.address}) with its password (normal password)",
            "IMAP:        " + "; ".join(listener.describe(self._host(listener)) for listener in self.imap),
            "SMTP:        " + "; ".join(listener.describe(self._host(listener)) for listener in self.smtp),
            f"certificate: {kind}, SHA-256 {self.fingerprint}",
            f"Delta Chat:  {link}",
        ]
