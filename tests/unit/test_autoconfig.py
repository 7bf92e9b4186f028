"""Thunderbird-style autoconfig: the document, the paths it is served on, and the config key."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from twisted.web.test.requesthelper import DummyRequest

from ygbridge.autoconfig import AutoconfigResource, autoconfig_site
from ygbridge.clientsettings import Listener
from ygbridge.config import load_config

DOMAIN = "aiag7sesed2aaxgcgbnevruwpy.meship"
IMAP = [Listener(None, 1143, False), Listener("192.168.1.10", 993, True)]
SMTP = [Listener(None, 1025, False)]


def get(resource: AutoconfigResource, path: bytes, host: bytes = b"mail.lan") -> tuple[int, bytes]:
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.path = path
    request.requestHeaders.setRawHeaders(b"host", [host])
    request.getRequestHostname = lambda: host  # type: ignore[method-assign]
    body = resource.render_GET(request)
    return request.responseCode or 200, body


def servers(document: bytes, kind: str) -> list[tuple[str, str, str, str]]:
    root = ElementTree.fromstring(document)
    return [
        (
            s.get("type") or "",
            s.findtext("hostname") or "",
            s.findtext("port") or "",
            s.findtext("socketType") or "",
        )
        for s in root.iter(kind)
    ]


def test_both_paths_serve_the_listeners_implicit_tls_first() -> None:
    resource = AutoconfigResource(lambda: DOMAIN, IMAP, SMTP)
    for path in (b"/mail/config-v1.1.xml", b"/.well-known/autoconfig/mail/config-v1.1.xml"):
        code, body = get(resource, path)
        assert code == 200
        root = ElementTree.fromstring(body)
        assert root.find("emailProvider/domain").text == DOMAIN  # type: ignore[union-attr]
        assert servers(body, "incomingServer") == [
            ("imap", "192.168.1.10", "993", "SSL"),
            ("imap", "mail.lan", "1143", "STARTTLS"),
        ]
        assert servers(body, "outgoingServer") == [("smtp", "mail.lan", "1025", "STARTTLS")]
        assert root.find("emailProvider/incomingServer/username").text == "%EMAILLOCALPART%"  # type: ignore[union-attr]


def test_other_paths_are_not_found_and_an_unknown_domain_is_unavailable() -> None:
    assert get(AutoconfigResource(lambda: DOMAIN, IMAP, SMTP), b"/secret")[0] == 404
    assert get(AutoconfigResource(lambda: None, IMAP, SMTP), b"/mail/config-v1.1.xml")[0] == 503


def test_the_listen_key_is_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "a.ini"
    path.write_text("")
    assert load_config(path).autoconfig_listen == ()
    path.write_text("[autoconfig]\nlisten = tcp:8080:interface=192.168.1.10\n")
    config = load_config(path)
    assert config.autoconfig_listen == ("tcp:8080:interface=192.168.1.10",)
    assert autoconfig_site(config, lambda: DOMAIN).resource is not None
