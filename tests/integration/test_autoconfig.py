"""The autoconfig endpoint of a real bridge under twistd, beside a real router."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from xml.etree import ElementTree

import pytest

from . import harness


@pytest.fixture
def node(product: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Node]:
    with harness.Lab(tmp_path_factory.mktemp("autoconfig")) as lab:
        node = lab.add_node("n", "0.5.12")
        lab.start_routers()
        node.bridge.configure(autoconfig={"listen": "tcp:8080:interface=127.0.0.1"})
        node.bridge.setup(users={"alice": "alice-Secret-1"})
        node.bridge.start()
        yield node


#: Where Thunderbird looks: the autoconfig host's path (with the address asked about) and the
#: domain's well-known path.
PATHS = [
    "/mail/config-v1.1.xml?emailaddress=alice%40n.meship",
    "/.well-known/autoconfig/mail/config-v1.1.xml",
]


def test_clients_on_the_lan_get_the_nodes_settings(node: harness.Node) -> None:
    for path in PATHS:
        with node.ns.entered():
            with urllib.request.urlopen(f"http://127.0.0.1:8080{path}", timeout=10) as response:
                assert response.headers["content-type"].startswith("application/xml")
                root = ElementTree.fromstring(response.read())
        assert root.findtext("emailProvider/domain") == harness.meshname_domain(node.address)
        imap = root.find("emailProvider/incomingServer")
        assert imap is not None and (imap.findtext("hostname"), imap.findtext("port")) == (
            "127.0.0.1",
            "1143",
        )
        smtp = root.find("emailProvider/outgoingServer")
        assert smtp is not None and (smtp.findtext("port"), smtp.findtext("socketType")) == (
            "1025",
            "STARTTLS",
        )
