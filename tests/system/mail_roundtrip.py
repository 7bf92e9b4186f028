"""Run inside a node set up by scripts/setup-node.sh: USER mails herself over submission, reads it
over IMAP, and the mesh port answers on the node's address. Exit status 0 only if all of it worked.

    mail_roundtrip.py USER PASSWORD ADDRESS
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import sys
import time
import uuid

from ygbridge.addressing import parse_domain

TIMEOUT = 30.0


def main(user: str, password: str, address: str) -> None:
    token = uuid.uuid4().hex
    message = f"From: {address}\r\nTo: {address}\r\nSubject: round trip {token}\r\n\r\nhello {token}\r\n"
    with smtplib.SMTP("127.0.0.1", 1025, timeout=TIMEOUT) as smtp:
        smtp.login(user, password)
        smtp.sendmail(address, [address], message.encode())
    deadline = time.monotonic() + TIMEOUT
    with imaplib.IMAP4("127.0.0.1", 1143, timeout=TIMEOUT) as imap:
        imap.login(user, password)
        while True:
            imap.select("INBOX")
            _, found = imap.search(None, "SUBJECT", token)
            if found[0] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found[0], f"message {token} not in INBOX"
        _, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[TEXT])")
        assert token.encode() in data[0][1], data
    print(f"round trip: {token} delivered to {address}")
    node = parse_domain(address.rsplit("@", 1)[1])
    with socket.create_connection((str(node), 25), timeout=TIMEOUT) as mesh:
        banner = mesh.recv(512)
    assert banner.startswith(b"220"), banner
    print(f"mesh port 25 on {node}: {banner.decode().strip()}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
