"""TLS on the client ports of real bridges (yggdrasil 0.5.12), with the standard library's clients.

Node A listens on every interface with the certificate ``init`` generated: inside its namespace a
client reaches it on loopback and on the node's own 200::/7 address, which is not loopback, so
passwords go only over TLS there. Node B uses an operator's CA-signed certificate as given.
"""

from __future__ import annotations

import datetime
import imaplib
import ipaddress
import smtplib
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import harness
from .messages import check_delivered, fetch_body, make_message, send, wait_for_message

PASSWORD = "alice-Secret-1"
STARTTLS_SUBMISSION, STARTTLS_IMAP, TLS_SUBMISSION, TLS_IMAP = 1025, 1143, 1465, 1993
EVERYWHERE = "tcp6:{}:interface=\\:\\:"  # dual stack: IPv4 loopback and the node's 200::/7 address


@dataclass
class Nodes:
    a: harness.Node  # generated self-signed certificate, listeners on every interface
    b: harness.Node  # configured CA-signed certificate, listeners on loopback only
    ca: Path  # the CA that signed B's certificate


def _operator_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 that it signed: (fullchain.pem, key.pem, ca.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test operator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain, key, ca_file = directory / "fullchain.pem", directory / "key.pem", directory / "ca.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return chain, key, ca_file


@pytest.fixture(scope="module")
def nodes(product: None, module_lab: harness.Lab) -> Iterator[Nodes]:
    a, b = module_lab.add_node("a", "0.5.12"), module_lab.add_node("b", "0.5.12")
    module_lab.start_routers()
    a.bridge.settings["submission"] = {
        "listen": EVERYWHERE.format(STARTTLS_SUBMISSION),
        "listen_tls": EVERYWHERE.format(TLS_SUBMISSION),
    }
    a.bridge.settings["imap"] = {
        "listen": EVERYWHERE.format(STARTTLS_IMAP),
        "listen_tls": EVERYWHERE.format(TLS_IMAP),
    }
    chain, key, ca = _operator_certificate(b.dir)
    b.bridge.settings["tls"] = {"certificate": str(chain), "key": str(key)}
    b.bridge.settings["submission"]["listen_tls"] = f"tcp:{TLS_SUBMISSION}:interface=127.0.0.1"
    b.bridge.settings["imap"]["listen_tls"] = f"tcp:{TLS_IMAP}:interface=127.0.0.1"
    for node in (a, b):
        node.bridge.setup(users={"alice": PASSWORD})
        node.bridge.start()
    yield Nodes(a, b, ca)


def _trusting(cafile: Path) -> ssl.SSLContext:
    """A client context that verifies the server's certificate (and the address it names) fully."""
    return ssl.create_default_context(cafile=str(cafile))


def _certificate_file(node: harness.Node) -> Path:
    return node.dir / "ygbridge-cert.pem"


def _smtp(node: harness.Node, host: str, port: int, context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    with node.ns.entered():
        if context is not None:
            return smtplib.SMTP_SSL(host, port, local_hostname="client.test", timeout=30, context=context)
        return smtplib.SMTP(host, port, local_hostname="client.test", timeout=30)


def _imap(node: harness.Node, host: str, port: int, context: ssl.SSLContext | None = None) -> imaplib.IMAP4:
    with node.ns.entered():
        if context is not None:
            return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30)
        return imaplib.IMAP4(host, port, timeout=30)


def test_init_generated_a_certificate_for_the_node(nodes: Nodes) -> None:
    certificate = x509.load_pem_x509_certificate(_certificate_file(nodes.a).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert harness.meshname_domain(nodes.a.address) in names.get_values_for_type(x509.DNSName)
    assert nodes.a.address in names.get_values_for_type(x509.IPAddress)
    key = nodes.a.dir / "ygbridge-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not _certificate_file(nodes.b).exists()  # B's configured pair is used instead


def test_submission_on_the_mesh_address_wants_starttls_before_auth(nodes: Nodes) -> None:
    node = nodes.a
    smtp = _smtp(node, str(node.address), STARTTLS_SUBMISSION)
    try:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlAHdoYXRldmVy")
        assert code == 538, text
        smtp.starttls(context=_trusting(_certificate_file(node)))  # verifies the 200::/7 address too
        smtp.ehlo()
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")
        smtp.login("alice", PASSWORD)
        alice = node.bridge.address_of("alice")
        message, mid = make_message(alice, [alice], "over STARTTLS", "sent over STARTTLS\n")
        send(smtp, alice, [alice], message)
    finally:
        smtp.quit()
    with node.bridge.imap(("alice", PASSWORD)) as imap:
        stored = fetch_body(imap, wait_for_message(imap, mid, timeout=30))
        check_delivered(stored, message, received=1, return_path=alice)
    assert b" with ESMTPSA;" in stored.split(b"\r\n\r\n", 1)[0]  # RFC 3848: over TLS, authenticated


def test_submission_on_loopback_takes_auth_in_clear(nodes: Nodes) -> None:
    smtp = _smtp(nodes.a, "127.0.0.1", STARTTLS_SUBMISSION)
    try:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and smtp.has_extn("auth")
        smtp.login("alice", PASSWORD)
    finally:
        smtp.quit()


def test_imap_on_the_mesh_address_refuses_login_before_starttls(nodes: Nodes) -> None:
    node = nodes.a
    imap = _imap(node, str(node.address), STARTTLS_IMAP)
    try:
        assert {"STARTTLS", "LOGINDISABLED"} <= set(imap.capabilities)
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            imap.login("alice", PASSWORD)
        imap.starttls(_trusting(_certificate_file(node)))
        assert "LOGINDISABLED" not in imap.capabilities and "STARTTLS" not in imap.capabilities
        assert imap.login("alice", PASSWORD)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()


def test_imap_on_loopback_takes_login_in_clear(nodes: Nodes) -> None:
    imap = _imap(nodes.a, "127.0.0.1", STARTTLS_IMAP)
    try:
        assert "LOGINDISABLED" not in imap.capabilities and "STARTTLS" in imap.capabilities
        assert imap.login("alice", PASSWORD)[0] == "OK"
    finally:
        imap.logout()


def test_implicit_tls_on_the_mesh_address(nodes: Nodes) -> None:
    node, context = nodes.a, _trusting(_certificate_file(nodes.a))
    smtp = _smtp(node, str(node.address), TLS_SUBMISSION, context)
    try:
        smtp.ehlo()
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")
        smtp.login("alice", PASSWORD)
    finally:
        smtp.quit()
    imap = _imap(node, str(node.address), TLS_IMAP, context)
    try:
        assert "STARTTLS" not in imap.capabilities
        assert imap.login("alice", PASSWORD)[0] == "OK"
    finally:
        imap.logout()


def test_configured_certificate_is_served_as_given(nodes: Nodes) -> None:
    node, context = nodes.b, _trusting(nodes.ca)
    smtp = _smtp(node, "127.0.0.1", STARTTLS_SUBMISSION)
    try:
        smtp.starttls(context=context)  # only verifies with the chain the operator configured
        smtp.ehlo()
        smtp.login("alice", PASSWORD)
    finally:
        smtp.quit()
    imap = _imap(node, "127.0.0.1", TLS_IMAP, context)
    try:
        assert imap.login("alice", PASSWORD)[0] == "OK"
    finally:
        imap.logout()


def _link(output: str) -> tuple[str, dict[str, str]]:
    """The address and parameters of the ``dclogin:`` link in a command's output."""
    links = [word for word in output.split() if word.startswith("dclogin:")]
    assert len(links) == 1, output
    parts = urlsplit(links[0].replace("dclogin:", "dclogin://", 1))
    return unquote(parts.netloc), {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}


def test_user_add_prints_settings_and_a_link_for_the_listeners(nodes: Nodes) -> None:
    node = nodes.b
    output = node.bridge.cli("user", "add", "dave", "--password-stdin", input="dave-Secret-4\n").stdout
    assert "127.0.0.1 port 1025, STARTTLS" in output and "127.0.0.1 port 1993, SSL/TLS" in output
    address, params = _link(output)
    assert address == node.bridge.address_of("dave")
    assert params == {
        "v": "1",
        "p": "dave-Secret-4",
        "ih": "127.0.0.1",
        "ip": str(TLS_IMAP),
        "is": "ssl",
        "sh": "127.0.0.1",
        "sp": str(TLS_SUBMISSION),
        "ss": "ssl",
    }  # a CA-signed certificate: no "accept invalid certificates"


def test_login_link_for_a_host_and_a_self_signed_certificate(nodes: Nodes) -> None:
    node = nodes.a
    host = str(node.address)
    output = node.bridge.cli("login-link", "alice", "--password-stdin", "--host", host, input=PASSWORD + "\n")
    address, params = _link(output.stdout)
    assert address == node.bridge.address_of("alice")
    assert (params["ih"], params["ip"], params["is"]) == (host, str(TLS_IMAP), "ssl")
    assert (params["sh"], params["sp"], params["ss"], params["ic"]) == (host, str(TLS_SUBMISSION), "ssl", "3")
    refused = node.bridge.cli("login-link", "alice", "--password-stdin", input="wrong\n", check=False)
    assert refused.returncode == 1 and "not the password" in refused.stderr
