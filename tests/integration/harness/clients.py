"""SMTP and IMAP clients whose sockets live in a namespace (TLS without verification: the bridges'
certificates are self-signed)."""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import ssl
from collections.abc import Iterator

from .namespaces import Namespace

CLIENT_TIMEOUT = 30.0


@contextlib.contextmanager
def smtp_client(
    ns: Namespace,
    host: str,
    port: int,
    *,
    login: tuple[str, str] | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> Iterator[smtplib.SMTP]:
    """An SMTP client whose socket lives in ``ns``; EHLO done, STARTTLS only if AUTH needs it."""
    with ns.entered():
        client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=timeout)
    try:
        client.ehlo()
        if login is not None:
            if not client.has_extn("auth") and client.has_extn("starttls"):
                client.starttls(context=insecure_tls())
                client.ehlo()
            client.login(*login)
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


@contextlib.contextmanager
def imap_client(
    ns: Namespace,
    host: str,
    port: int,
    *,
    login: tuple[str, str] | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> Iterator[imaplib.IMAP4]:
    """An IMAP client whose socket lives in ``ns``; LOGIN done if ``login`` (after STARTTLS if the
    server refuses LOGIN before it)."""
    with ns.entered():
        client = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        if login is not None:
            if "LOGINDISABLED" in client.capabilities and "STARTTLS" in client.capabilities:
                client.starttls(insecure_tls())
            client.login(*login)
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
            client.logout()
        with contextlib.suppress(OSError):
            client.shutdown()


def insecure_tls() -> ssl.SSLContext:
    """The bridges use self-signed certificates: encrypt, but do not verify."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
