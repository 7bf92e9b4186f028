"""A real Postfix (Debian's package) on a lab node of its own: a mail server nobody here wrote.

:class:`Postfix` runs one private instance (``postfix -c DIR``) in a node's namespace, beside that
node's yggdrasil router and instead of a bridge. Everything it owns (configuration, queue, data,
Maildirs, log) lives in one directory, removed by :meth:`Postfix.close`. The configuration is the
one README's "Exchanging mail with Postfix on the mesh" gives an operator, plus short retry times.

Typical use::

    lab = Lab(tmp_path)
    a, p = lab.add_node("a"), lab.add_node("p")
    lab.connect(p, a)
    lab.start_routers()
    postfix = Postfix(p, users=["dave"])
    postfix.start(ygbridge_nodes=[a.address])
    ...
    postfix.close()
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import ipaddress
import json
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from . import harness

#: The Postfix daemons this instance runs: Debian's master.cf without chroot (the queue lives in
#: a temporary directory, not under /var/spool/postfix) and without the pipe(8) examples.
MASTER_CF = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

#: Mailboxes are owned by this uid/gid (nobody): virtual(8) refuses to deliver as root.
MAILBOX_OWNER = 65534
POSTFIX_BIN = Path("/usr/sbin/postfix")


def postfix_available() -> str | None:
    """None when Debian's postfix package is installed, else why not."""
    for command in ("postfix", "postconf", "postqueue"):
        if shutil.which(command, path="/usr/sbin:/usr/bin") is None:
            return f"`{command}` is missing (apt-get install postfix; .ci/run installs it)"
    return None


def mesh_domain(address: ipaddress.IPv6Address) -> str:
    return harness.meshname_domain(address)


class Postfix:
    """One private Postfix instance on ``node`` (its router must be running)."""

    def __init__(self, node: harness.Node, users: Sequence[str]) -> None:
        self.node = node
        self.users = list(users)
        # Postfix's daemons drop privileges and virtual(8) writes as nobody: pytest's own temporary
        # directories (mode 0700) cannot be walked by them, so this one is world-traversable.
        self.dir = Path(tempfile.mkdtemp(prefix=f"ygb-postfix-{node.name}-"))
        self.dir.chmod(0o755)
        self.config = self.dir / "etc"
        self.mail = self.dir / "mail"
        self.log_path = self.dir / "maillog"
        self.started = False

    @property
    def address(self) -> ipaddress.IPv6Address:
        return self.node.address

    @property
    def domain(self) -> str:
        return mesh_domain(self.address)

    def address_of(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def literal_of(self, user: str) -> str:
        return f"{user}@[IPv6:{self.address.compressed}]"

    # -- configuration

    def main_cf(self) -> dict[str, str]:
        """main.cf: README's settings for a Postfix on the mesh, then the test instance's own."""
        return {
            # README: who this node is, and where it listens
            "myhostname": self.domain,
            "myorigin": "$myhostname",
            "mydestination": "$myhostname",  # user@[IPv6:<its address>] is local too (inet_interfaces)
            "inet_interfaces": self.address.compressed,
            "inet_protocols": "ipv6",
            "mynetworks": f"[{self.address.compressed}]/128",
            # README: reach ygbridge nodes directly, never through DNS
            "transport_maps": f"texthash:{self.config}/transport",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            # the test instance: everything in one directory, mail in Maildirs of virtual users
            "compatibility_level": "3.6",
            "queue_directory": str(self.dir / "queue"),
            "data_directory": str(self.dir / "data"),
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "local_transport": "virtual",
            "virtual_mailbox_base": str(self.mail),
            "virtual_mailbox_maps": f"texthash:{self.config}/mailboxes",
            "local_recipient_maps": "$virtual_mailbox_maps",
            "virtual_uid_maps": f"static:{MAILBOX_OWNER}",
            "virtual_gid_maps": f"static:{MAILBOX_OWNER}",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            # bounded tests: retry soon, give up soon, fail fast
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "10s",
            "maximal_queue_lifetime": "5m",
            "bounce_queue_lifetime": "5m",
        }

    def write_config(self, ygbridge_nodes: Sequence[ipaddress.IPv6Address]) -> None:
        self.config.mkdir(exist_ok=True)
        for sub in ("queue", "data"):
            (self.dir / sub).mkdir(exist_ok=True)
        self.mail.mkdir(exist_ok=True)
        harness.run_command(["chown", f"{MAILBOX_OWNER}:{MAILBOX_OWNER}", str(self.mail)])
        harness.run_command(["chown", "postfix", str(self.dir / "data")])
        settings = self.main_cf()
        (self.config / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.config / "master.cf").write_text(MASTER_CF)
        (self.config / "transport").write_text(
            "".join(f"{mesh_domain(n)} smtp:[{n.compressed}]:25\n" for n in ygbridge_nodes)
        )
        mailboxes = ""
        for user in self.users:
            for key in (self.address_of(user), self.literal_of(user), user):
                mailboxes += f"{key} {user}/\n"
        (self.config / "mailboxes").write_text(mailboxes)

    # -- the instance

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``postfix -c DIR ARGS`` inside the node's namespace (its errors go to the maillog, or to
        a terminal: run it under ``script`` so that they are seen)."""
        command = shlex.join([str(POSTFIX_BIN), "-c", str(self.config), *args])
        result = self.node.ns.run(["script", "-qec", command, "/dev/null"], check=False, timeout=60)
        if check and result.returncode != 0:
            raise harness.HarnessError(
                f"{command} exited {result.returncode}: {result.stdout}{result.stderr}\n{self.log()}"
            )
        return result

    def start(self, ygbridge_nodes: Sequence[ipaddress.IPv6Address], timeout: float = 30.0) -> None:
        """Write the configuration, start the instance and wait until its smtpd answers."""
        self.write_config(ygbridge_nodes)
        self.postfix("check")
        self.postfix("start")
        self.started = True
        self._wait_answering(timeout)

    def _wait_answering(self, timeout: float) -> None:
        def answers() -> bool:
            with harness.smtp_client(self.node.ns, self.address.compressed, 25, timeout=5) as smtp:
                return smtp.noop()[0] == 250

        harness.wait_until(
            answers, timeout=timeout, what=f"Postfix on {self.node.name} to answer", detail=self.log
        )

    def ehlo_keywords(self) -> set[str]:
        """The extensions a new SMTP session with this Postfix is offered (upper case)."""
        with harness.smtp_client(self.node.ns, self.address.compressed, 25, timeout=5) as smtp:
            return {keyword.upper() for keyword in smtp.esmtp_features}

    def postconf(self, *args: str) -> str:
        """``postconf -c DIR ARGS`` (inside the node's namespace); its output."""
        return self.node.ns.run(["postconf", "-c", str(self.config), *args], timeout=30).stdout

    def restart(self, timeout: float = 30.0) -> None:
        """Stop every daemon (closing every connection, also those a client keeps cached) and start
        again: unlike ``reload``, no smtpd of the old configuration goes on serving a session."""
        self.postfix("stop")
        harness.wait_until(
            lambda: self.postfix("status", check=False).returncode != 0,
            timeout=timeout,
            what=f"Postfix on {self.node.name} to stop",
            detail=self.log,
        )
        self.postfix("start")
        self._wait_answering(timeout)

    @contextlib.contextmanager
    def changed(self, **settings: str) -> Iterator[None]:
        """main.cf with ``settings`` for the length of the block, then as it was (each time by
        ``postconf -e`` or ``-X`` and a restart)."""
        explicit = {key: self.postconf("-nh", key).strip() for key in settings}
        try:
            self.postconf("-e", *(f"{key}={value}" for key, value in settings.items()))
            self.restart()
            yield
        finally:
            if unset := [key for key, value in explicit.items() if not value]:
                self.postconf("-X", *unset)
            if kept := [f"{key}={value}" for key, value in explicit.items() if value]:
                self.postconf("-e", *kept)
            self.restart()

    def flush(self) -> None:
        """Deliver whatever Postfix has queued now, instead of at its next queue run."""
        self.node.ns.run(["postqueue", "-c", str(self.config), "-f"], check=False, timeout=30)

    def queue(self) -> list[dict[str, Any]]:
        """The queued messages as ``postqueue -j`` lists them (one JSON object each)."""
        out = self.node.ns.run(["postqueue", "-c", str(self.config), "-j"], timeout=30).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the instance (its namespace would kill stragglers) and remove its directory."""
        if self.started:
            self.postfix("stop", check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- submitting and reading mail on the Postfix node

    def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> None:
        """Hand a message to Postfix over SMTP from its own node (as its users' clients would),
        with further MAIL and RCPT parameters (DSN, SMTPUTF8) if given."""
        with harness.smtp_client(self.node.ns, self.address.compressed, 25) as smtp:
            refused = smtp.sendmail(
                sender, list(recipients), message, ["BODY=8BITMIME", *mail_options], list(rcpt_options)
            )
        if refused:
            raise AssertionError(f"Postfix refused recipients: {refused}")

    def maildir(self, user: str) -> list[bytes]:
        """Every message delivered to ``user``'s Maildir so far (new and cur)."""
        found: list[bytes] = []
        for sub in ("new", "cur"):
            folder = self.mail / user / sub
            if folder.is_dir():
                found.extend(path.read_bytes() for path in sorted(folder.iterdir()))
        return found

    def wait_for(
        self, user: str, predicate: Callable[[bytes], bool], *, what: str, timeout: float = 60.0
    ) -> bytes:
        """Bounded polling (flushing Postfix's queue) until a message in ``user``'s Maildir satisfies
        ``predicate``; returns it."""
        last_flush = 0.0

        def found() -> bytes | None:
            nonlocal last_flush
            match = next((m for m in self.maildir(user) if predicate(m)), None)
            if match is None and time.monotonic() - last_flush > 2:
                self.flush()
                last_flush = time.monotonic()
            return match

        return harness.wait_until(
            found, timeout=timeout, interval=0.25, what=f"{what} in {user}'s Maildir", detail=self.log
        )


def parse(raw: bytes) -> EmailMessage:
    """A stored message as the standard library's mail parser reads it."""
    return email.message_from_bytes(raw, policy=email.policy.default)
