"""Thunderbird-style autoconfig for mail clients on the LAN: ``config-v1.1.xml`` served over HTTP.

Clients that look for ``/mail/config-v1.1.xml`` or ``/.well-known/autoconfig/mail/config-v1.1.xml``
on the ``[autoconfig] listen`` endpoint get this node's IMAP and submission listeners. A listener on
every interface is named by the host name the client used to reach the autoconfig endpoint.
Nothing secret is served: the user still types the password.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ygbridge.clientsettings import Listener, listeners
from ygbridge.config import Config

#: The paths clients ask for (Thunderbird's ISPDB layout and its .well-known form).
PATHS = (b"/mail/config-v1.1.xml", b"/.well-known/autoconfig/mail/config-v1.1.xml")


def config_xml(domain: str, host: str, imap: list[Listener], smtp: list[Listener]) -> bytes:
    """The clientConfig 1.1 document for ``domain``: every TCP listener, implicit TLS first."""
    root = ElementTree.Element("clientConfig", version="1.1")
    provider = ElementTree.SubElement(root, "emailProvider", id=domain)
    ElementTree.SubElement(provider, "domain").text = domain
    ElementTree.SubElement(provider, "displayName").text = f"ygbridge mail on {domain}"
    ElementTree.SubElement(provider, "displayShortName").text = "ygbridge"
    for kind, found in (("incomingServer", imap), ("outgoingServer", smtp)):
        for listener in sorted(found, key=lambda listener: not listener.implicit_tls):
            server = ElementTree.SubElement(
                provider, kind, type="imap" if kind == "incomingServer" else "smtp"
            )
            ElementTree.SubElement(server, "hostname").text = listener.host or host
            ElementTree.SubElement(server, "port").text = str(listener.port)
            ElementTree.SubElement(server, "socketType").text = "SSL" if listener.implicit_tls else "STARTTLS"
            ElementTree.SubElement(server, "authentication").text = "password-cleartext"
            ElementTree.SubElement(server, "username").text = "%EMAILLOCALPART%"
    document: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


class AutoconfigResource(Resource):
    """Answers the autoconfig paths; 503 until the router has told the node its domain."""

    isLeaf = True

    def __init__(self, domain: Callable[[], str | None], imap: list[Listener], smtp: list[Listener]) -> None:
        super().__init__()
        self._domain = domain
        self._imap = imap
        self._smtp = smtp

    def render_GET(self, request: Request) -> bytes:
        if request.path not in PATHS:
            request.setResponseCode(404)
            return b"not found\n"
        domain = self._domain()
        if domain is None:
            request.setResponseCode(503)
            return b"the node does not know its mesh address yet: try again shortly\n"
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        host = request.getRequestHostname().decode("ascii", "replace")
        return config_xml(domain, host, self._imap, self._smtp)


def autoconfig_site(config: Config, domain: Callable[[], str | None]) -> Site:
    """The HTTP site of the ``[autoconfig] listen`` endpoints."""
    imap = listeners(config.imap_listen, config.imap_listen_tls)
    smtp = listeners(config.submission_listen, config.submission_listen_tls)
    site = Site(AutoconfigResource(domain, imap, smtp))
    site.noisy = False
    return site
