"""The client-port certificate (generated or configured), the [tls] keys, and the password policy."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides

from ygbridge.addressing import domain_for
from ygbridge.config import Config, load_config
from ygbridge.errors import ConfigError
from ygbridge.tls import (
    CERTIFICATE_FILE,
    KEY_FILE,
    CertificateFiles,
    ServerContext,
    certificate_files,
    generate,
    load,
    node_names,
)
from ygbridge.tlspolicy import ClientTLS, is_loopback

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
NOW = datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    directory = tmp_path_factory.mktemp("tls")
    files = CertificateFiles(directory / "c.pem", directory / "k.pem", configured=False)
    generate(files, *node_names(NODE), NOW)
    return files


def test_generated_certificate_names_the_node(generated: CertificateFiles) -> None:
    certificate = x509.load_pem_x509_certificate(generated.certificate.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [domain_for(NODE), "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        NODE,
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv6Address("::1"),
    ]
    assert certificate.not_valid_before_utc < NOW < certificate.not_valid_after_utc
    assert stat.S_IMODE(generated.key.stat().st_mode) == 0o600


def _handshake(context: ServerContext, alpn: list[bytes]) -> SSL.Connection:
    """A client that offers ``alpn`` shakes hands with ``context`` in memory; returns the client."""
    server = context.serverConnectionForTLS(None)
    server.set_accept_state()
    client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD))
    client.set_connect_state()
    if alpn:
        client.set_alpn_protos(alpn)
    done: set[SSL.Connection] = set()
    for _ in range(10):
        for side, other in ((client, server), (server, client)):
            try:
                side.do_handshake()
                done.add(side)
            except SSL.WantReadError:
                pass
            try:
                other.bio_write(side.bio_read(65536))
            except SSL.WantReadError:
                pass
    assert done == {client, server}
    return client


def test_generated_certificate_loads_as_self_signed(generated: CertificateFiles) -> None:
    loaded = load(generated)
    assert loaded.self_signed
    assert len(loaded.fingerprint.split(":")) == 32
    served = _handshake(loaded.context, []).get_peer_certificate()
    assert served is not None
    assert (
        served.to_cryptography().public_bytes(serialization.Encoding.PEM)
        == generated.certificate.read_bytes()
    )


def test_clients_offering_alpn_are_served_without_it(generated: CertificateFiles) -> None:
    """Twisted's own ALPN callback fails such handshakes with an internal_error alert."""
    client = _handshake(load(generated).context, [b"imap"])
    assert client.get_alpn_proto_negotiated() == b""


def test_without_router_the_certificate_names_localhost_only() -> None:
    names, addresses = node_names(None)
    assert names == ["localhost"]
    assert [str(a) for a in addresses] == ["127.0.0.1", "::1"]


def _signed_chain(directory: Path) -> tuple[Path, Path]:
    """A leaf signed by a small CA, written leaf first then CA (as fullchain.pem files are)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey):  # type: ignore[no-untyped-def]
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .sign(signer, hashes.SHA256())
        )

    chain = [cert("mail.example", "ca", leaf_key, ca_key), cert("ca", "ca", ca_key, ca_key)]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "fullchain.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(key_pem)
    return directory / "fullchain.pem", directory / "key.pem"


def test_configured_pair_is_used_as_given(tmp_path: Path) -> None:
    certificate, key = _signed_chain(tmp_path)
    config_path = tmp_path / "node.ini"
    config_path.write_text("[tls]\ncertificate = fullchain.pem\nkey = key.pem\nallow_plaintext = yes\n")
    config = load_config(config_path)
    files = certificate_files(config)
    assert files == CertificateFiles(certificate, key, configured=True)
    assert config.allow_plaintext
    loaded = load(files)
    assert not loaded.self_signed
    assert len(_handshake(loaded.context, [b"smtp"]).get_peer_cert_chain() or ()) == 2


def test_a_combined_pem_file_needs_no_key_setting(tmp_path: Path) -> None:
    certificate, key = _signed_chain(tmp_path)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certificate.read_bytes() + key.read_bytes())
    (tmp_path / "node.ini").write_text("[tls]\ncertificate = combined.pem\n")
    assert not load(certificate_files(load_config(tmp_path / "node.ini"))).self_signed


def test_key_of_another_certificate_is_refused(tmp_path: Path, generated: CertificateFiles) -> None:
    certificate, _ = _signed_chain(tmp_path)
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        load(CertificateFiles(certificate, generated.key, configured=True))


def test_missing_generated_certificate_points_to_init(tmp_path: Path) -> None:
    config = Config(path=tmp_path / "node.ini", database="sqlite:///data/mail.db")
    files = certificate_files(config)
    assert files == CertificateFiles(
        tmp_path / "data" / CERTIFICATE_FILE, tmp_path / "data" / KEY_FILE, configured=False
    )
    with pytest.raises(ConfigError, match="ygbridge init"):
        load(files)


def test_postgresql_nodes_keep_the_certificate_beside_the_configuration(tmp_path: Path) -> None:
    config = Config(path=tmp_path / "node.ini", database="postgresql://u@h/db")
    assert certificate_files(config).certificate == tmp_path / CERTIFICATE_FILE


def test_the_state_directory_takes_the_generated_pair(tmp_path: Path) -> None:
    """``[storage] state_directory`` (relative to the file, or absolute) for either database."""
    path = tmp_path / "etc" / "node.ini"
    path.parent.mkdir()
    path.write_text("[storage]\ndatabase = postgresql://u@/db?host=/run/pg\nstate_directory = ../state\n")
    files = certificate_files(load_config(path))
    assert (files.certificate, files.key) == (
        tmp_path / "etc" / ".." / "state" / CERTIFICATE_FILE,
        tmp_path / "etc" / ".." / "state" / KEY_FILE,
    )
    sqlite = Config(path=path, database="sqlite:///mail.db", state_directory="/var/lib/elsewhere")
    assert certificate_files(sqlite).certificate == Path("/var/lib/elsewhere") / CERTIFICATE_FILE


def test_a_state_directory_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    config = Config(path=tmp_path / "node.ini", database="postgresql://u@h/db", state_directory="a-file/tls")
    names, addresses = node_names(None)
    with pytest.raises(ConfigError, match=r"cannot write .*a-file/tls/ygbridge-key.pem: .*state_directory"):
        generate(certificate_files(config), names, addresses, datetime.datetime.now(datetime.UTC))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tls]\nkey = k.pem\n", r"\[tls\] key is set without"),
        ("[tls]\nallow_plaintext = maybe\n", r"\[tls\] allow_plaintext"),
    ],
)
def test_bad_tls_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "node.ini").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "node.ini")


def test_example_config_documents_the_tls_defaults() -> None:
    config = load_config(Path(__file__).parents[2] / "conf" / "ygbridge.ini")
    assert (config.submission_listen_tls, config.imap_listen_tls) == ((), ())
    assert (config.tls_certificate, config.tls_key, config.allow_plaintext) == (None, None, False)


def test_implicit_tls_listeners_are_read(tmp_path: Path) -> None:
    (tmp_path / "node.ini").write_text(
        "[imap]\nlisten_tls = tcp:993\n[submission]\nlisten_tls = tcp:465 tcp:4650\n"
    )
    config = load_config(tmp_path / "node.ini")
    assert (config.imap_listen_tls, config.submission_listen_tls) == (("tcp:993",), ("tcp:465", "tcp:4650"))
    assert config.imap_listen == ("tcp:1143:interface=127.0.0.1",)


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (IPv4Address("TCP", "127.0.0.1", 1), True),
        (IPv4Address("TCP", "127.8.9.10", 1), True),
        (IPv6Address("TCP", "::1", 1), True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), True),
        (UNIXAddress(b"/run/ygbridge.sock"), True),
        (IPv4Address("TCP", "10.231.1.1", 1), False),
        (IPv6Address("TCP", "fe80::1%eth0", 1), False),
        (IPv6Address("TCP", "203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47", 1), False),
    ],
)
def test_loopback_peers(peer: object, local: bool) -> None:
    assert is_loopback(peer) is local  # type: ignore[arg-type]


def test_password_policy() -> None:
    def transport(host: str, tls: bool = False) -> StringTransport:
        made = StringTransport(peerAddress=IPv4Address("TCP", host, 1))
        if tls:
            alsoProvides(made, ISSLTransport)
        return made

    strict, relaxed = ClientTLS(object()), ClientTLS(object(), allow_plaintext=True)  # type: ignore[arg-type]
    assert strict.password_allowed(transport("127.0.0.1"))
    assert not strict.password_allowed(transport("192.168.1.5"))
    assert strict.password_allowed(transport("192.168.1.5", tls=True))
    assert relaxed.password_allowed(transport("192.168.1.5"))
