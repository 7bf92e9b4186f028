"""The certificate of the client ports: generated self-signed at ``init``, or configured, then loaded."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from zope.interface import implementer

from ygbridge.addressing import domain_for
from ygbridge.config import Config
from ygbridge.errors import ConfigError

CERTIFICATE_FILE = "ygbridge-cert.pem"
KEY_FILE = "ygbridge-key.pem"
#: Lifetime of a generated certificate; nothing renews it, and clients pin self-signed ones anyway.
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class CertificateFiles:
    """Where the certificate (PEM, leaf first, then any chain) and its private key live."""

    certificate: Path
    key: Path
    configured: bool


def _no_alpn(connection: SSL.Connection, offered: list[bytes]) -> SSL._NoOverlappingProtocols:
    """Serve the port's protocol whatever ALPN names a client offers, negotiating none.

    Twisted's own callback answers an empty selection, which OpenSSL turns into an internal_error
    alert: clients that send ALPN (Delta Chat on implicit TLS) could not connect at all.
    """
    return SSL.NO_OVERLAPPING_PROTOCOLS


@implementer(IOpenSSLServerConnectionCreator)
class ServerContext:
    """The TLS server side of the client ports, for STARTTLS and implicit-TLS listeners alike."""

    def __init__(self, options: CertificateOptions) -> None:
        self._context = options.getContext()
        self._context.set_alpn_select_callback(_no_alpn)

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        return SSL.Connection(self._context)


@dataclass(frozen=True)
class Certificate:
    """A loaded certificate: the TLS context of the client ports and what clients need to know."""

    context: ServerContext
    self_signed: bool
    fingerprint: str


def certificate_files(config: Config) -> CertificateFiles:
    """The configured [tls] files, else the generated pair in the state directory (by default
    beside the SQLite database, or beside the configuration file for other databases)."""
    if config.tls_certificate is not None:
        certificate = config.base_dir / config.tls_certificate
        key = config.base_dir / (config.tls_key or config.tls_certificate)
        return CertificateFiles(certificate, key, configured=True)
    directory = config.state_dir
    return CertificateFiles(directory / CERTIFICATE_FILE, directory / KEY_FILE, configured=False)


def node_names(
    node: ipaddress.IPv6Address | None,
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """DNS names and IP addresses a node's certificate covers (the mesh ones when ``node`` is known)."""
    names = ["localhost"]
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv6Address("::1"),
    ]
    if node is not None:
        names.insert(0, domain_for(node))
        addresses.insert(0, node)
    return names, addresses


def generate(
    files: CertificateFiles,
    names: list[str],
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime.datetime,
) -> None:
    """Write a new RSA key and a self-signed certificate for ``names`` and ``addresses``, both
    mode 0600 (in a directory created 0700), readable by the service's user alone."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternative = [x509.DNSName(name) for name in names] + [x509.IPAddress(a) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(files.key, key_pem, 0o600)
    _write(files.certificate, certificate.public_bytes(serialization.Encoding.PEM), 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the new file has ``mode`` from its creation on."""
    temporary = path.with_name(f".{path.name}.new")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}; set [storage] state_directory to a directory "
            "this user may write (or [tls] certificate to a certificate of your own)"
        ) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


def load(files: CertificateFiles) -> Certificate:
    """Load and check the pair; ConfigError names the file and the problem."""
    if not files.configured and not files.certificate.exists():
        raise ConfigError(f"no TLS certificate at {files.certificate}: `ygbridge init` creates one")
    try:
        chain = x509.load_pem_x509_certificates(_read(files.certificate, "certificate"))
    except ValueError:
        raise ConfigError(f"{files.certificate} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_read(files.key, "key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{files.key} holds no usable unencrypted PEM private key: {exc}") from None
    leaf = chain[0]
    # pyOpenSSL's Context takes cryptography's key and certificates as they are; Twisted's hints
    # still name pyOpenSSL's own (deprecated) PKey and X509 types.
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=leaf,  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
    )
    try:
        context = ServerContext(options)
    except SSL.Error:
        raise ConfigError(
            f"the key {files.key} does not belong to the certificate {files.certificate}"
        ) from None
    digest = leaf.fingerprint(hashes.SHA256()).hex().upper()
    return Certificate(
        context,
        self_signed=leaf.issuer == leaf.subject,
        fingerprint=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
    )
