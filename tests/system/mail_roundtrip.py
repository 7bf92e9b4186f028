"""Run inside a node set up by scripts/setup-node.sh: USER mails herself over submission, reads it
over IMAP, and the mesh port answers on the node's address. Exit status 0 only if all of it worked.

    mail_roundtrip.py USER PASSWORD ADDRESS [--kept TOKEN]

It prints ``round trip: TOKEN delivered to ADDRESS``. With ``--kept TOKEN`` (the token of an
earlier run), that earlier message must still be in the INBOX first: what was stored before the
node was set up again (or restarted) is still there.
"""

from __future__ import annotations

import argparse
import imaplib
import smtplib
import socket
import time
import uuid

from ygbridge.addressing import parse_domain

TIMEOUT = 30.0


def _holds(imap: imaplib.IMAP4, token: str, wait: float) -> bool:
    """Whether the INBOX holds the message whose subject and body carry ``token``, looking again for
    up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", token)
        if found[0] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not found[0]:
        return False
    _, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[TEXT])")
    assert token.encode() in data[0][1], data
    return True


def main(user: str, password: str, address: str, kept: str | None) -> None:
    if kept is not None:
        with imaplib.IMAP4("127.0.0.1", 1143, timeout=TIMEOUT) as imap:
            imap.login(user, password)
            assert _holds(imap, kept, 0.0), f"the earlier message {kept} is no longer in the INBOX"
        print(f"kept: {kept} is still in the INBOX")
    token = uuid.uuid4().hex
    message = f"From: {address}\r\nTo: {address}\r\nSubject: round trip {token}\r\n\r\nhello {token}\r\n"
    with smtplib.SMTP("127.0.0.1", 1025, timeout=TIMEOUT) as smtp:
        smtp.login(user, password)
        smtp.sendmail(address, [address], message.encode())
    with imaplib.IMAP4("127.0.0.1", 1143, timeout=TIMEOUT) as imap:
        imap.login(user, password)
        assert _holds(imap, token, TIMEOUT), f"message {token} not in INBOX"
    print(f"round trip: {token} delivered to {address}")
    node = parse_domain(address.rsplit("@", 1)[1])
    with socket.create_connection((str(node), 25), timeout=TIMEOUT) as mesh:
        banner = mesh.recv(512)
    assert banner.startswith(b"220"), banner
    print(f"mesh port 25 on {node}: {banner.decode().strip()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a mail round trip on a node set up by setup-node.sh")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("address")
    parser.add_argument("--kept", metavar="TOKEN", help="an earlier run's token, still in the INBOX")
    args = parser.parse_args()
    main(args.user, args.password, args.address, args.kept)
