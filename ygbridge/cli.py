"""The ``ygbridge`` command: database, users, and what the router says about this node.

It runs under :func:`twisted.internet.task.react`: the reactor runs once per process, and the
commands are coroutines that take it (for the router link and the time). Store functions are
called directly, on the command's own thread.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import ipaddress
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import peewee
import segno
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import react

from ygbridge.addressing import POSTMASTER, MailAddress, domain_for
from ygbridge.auth import hash_password, verify_password
from ygbridge.clientsettings import ClientSettings, listeners
from ygbridge.config import DEFAULT_CONFIG, Config, load_config
from ygbridge.errors import RouterError, UserError, YgbridgeError
from ygbridge.router.link import read_node
from ygbridge.router.state import NodeStatus
from ygbridge.store import queue, users
from ygbridge.store.db import PG_DUMP_HINT, backup_sqlite, connect
from ygbridge.store.identity import identity_history
from ygbridge.store.models import database
from ygbridge.tls import certificate_files, generate, node_names
from ygbridge.tls import load as load_certificate

QR_HELP = "also print the dclogin: link as a QR code (the default on a terminal)"

#: Exit status when the reader of standard output went away (``| head``), as if killed by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13
#: Exit status after Ctrl-C, as if killed by SIGINT.
EXIT_INTERRUPTED = 128 + 2


async def _node(reactor: Any, config: Config) -> NodeStatus:
    """What the router says about this node (RouterError while it is away)."""
    return await read_node(reactor, config.admin)


def _password(args: argparse.Namespace, confirm: bool = True) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise UserError(
            "no terminal to ask for the password: give it on standard input with --password-stdin"
        )
    else:
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != password:
            raise UserError("the two passwords differ")
    if not password:
        raise UserError("the password is empty")
    return password


async def cmd_init(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``init``: create the database (and postmaster) and, unless one is configured, a TLS certificate."""
    if POSTMASTER not in users.list_users():
        users.add_user(POSTMASTER, hash_password(secrets.token_urlsafe(32)), reactor.seconds())
    print(f"database ready: {config.database}")
    files = certificate_files(config)
    if not files.configured and not files.certificate.exists():
        names, addresses = node_names(await _address_if_known(reactor, config))
        generate(files, names, addresses, datetime.datetime.fromtimestamp(reactor.seconds(), datetime.UTC))
        print(f"created a self-signed TLS certificate for {', '.join(names + [str(a) for a in addresses])}")
    certificate = load_certificate(files)
    print(f"TLS certificate: {files.certificate} (key {files.key}), SHA-256 {certificate.fingerprint}")


async def _address_if_known(reactor: Any, config: Config) -> ipaddress.IPv6Address | None:
    """The node's address for its certificate; None (and a warning) while the router is away."""
    try:
        return (await _node(reactor, config)).identity.address
    except RouterError as exc:
        print(
            f"ygbridge: warning: {exc}\n  The certificate will not name the node's mesh address; "
            "delete it and run init again once yggdrasil runs to have it named.",
            file=sys.stderr,
        )
        return None


async def _print_client_settings(
    reactor: Any, config: Config, args: argparse.Namespace, name: str, password: str, host: str | None
) -> None:
    certificate = load_certificate(certificate_files(config))
    node = await _node(reactor, config)
    settings = ClientSettings(
        address=str(MailAddress(name, node.identity.address)),
        user=name,
        imap=listeners(config.imap_listen, config.imap_listen_tls),
        smtp=listeners(config.submission_listen, config.submission_listen_tls),
        self_signed=certificate.self_signed,
        fingerprint=certificate.fingerprint,
        host=host,
        machine=socket.gethostname(),
    )
    print("\n".join(settings.lines(password)))
    if args.qr or sys.stdout.isatty():
        print("Scan with Delta Chat (Add account, Scan QR code) to set the account up:")
        segno.make(settings.dclogin(password), error="l").terminal(out=sys.stdout, compact=True, border=2)


async def cmd_user_add(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``user add NAME``: add a user, then print the settings a mail client needs."""
    name = users.check_name(args.name)
    password = _password(args)
    users.add_user(name, hash_password(password), reactor.seconds())
    print(f"user {name} added")
    try:
        await _print_client_settings(reactor, config, args, name, password, None)
    except YgbridgeError as exc:
        print(
            f"ygbridge: no client settings yet: {exc}\n  `ygbridge login-link {name}` prints them.",
            file=sys.stderr,
        )


async def cmd_login_link(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``login-link NAME``: print a user's client settings again (the password is checked first)."""
    name = users.check_name(args.name)
    stored = users.password_hash(name)
    if stored is None:
        raise UserError(f"no such user: {name}")
    password = _password(args, confirm=False)
    if not verify_password(stored, password):
        raise UserError(f"that is not the password of {name}: a link with it would not log in")
    await _print_client_settings(reactor, config, args, name, password, args.host)


async def cmd_user_passwd(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``user passwd NAME``: set a new password."""
    users.set_password(args.name, hash_password(_password(args)))
    print(f"password of {users.check_name(args.name)} changed")


async def cmd_user_del(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``user del NAME``: delete a user and all its mail."""
    users.delete_user(args.name)
    print(f"user {users.check_name(args.name)} deleted with all its mail")


async def cmd_user_list(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``user list``: print the user names, one a line."""
    for name in users.list_users():
        print(name)


async def cmd_address(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``address NAME``: print the user's mail address on this node (asks the router)."""
    name = users.check_name(args.name)
    if name not in users.list_users():
        raise UserError(f"no such user: {name}")
    print(MailAddress(name, (await _node(reactor, config)).identity.address))


async def cmd_status(reactor: Any, config: Config, args: argparse.Namespace) -> int:
    """``status``: node identity, peers and queue, as text or ``--json``; 1 if the router is away."""
    try:
        status: NodeStatus | None = await _node(reactor, config)
        error = None
    except RouterError as exc:
        status, error = None, str(exc)
    if args.json:
        print(json.dumps(_status_json(status, error), indent=2))
    elif status is None:
        print(f"router:   unreachable ({error})")
        _print_queue(reactor.seconds())
    else:
        _print_node(status)
        _print_queue(reactor.seconds())
    return 0 if status is not None else 1


def _status_json(status: NodeStatus | None, error: str | None) -> dict[str, Any]:
    """What ``status --json`` prints: the node (null, and ``router_error``, while the router is
    away) with every peer, up or down with the router's reason, the queue per destination, and the
    identities mail was served for."""
    node = None
    if status is not None:
        identity = status.identity
        node = {
            "address": str(identity.address),
            "domain": domain_for(identity.address),
            "key": identity.key.hex(),
            "router": {"name": identity.build_name, "version": identity.build_version},
            "tun": {"enabled": status.tun.enabled, "name": status.tun.name},
            "peers": [
                {
                    "up": peer.up,
                    "address": str(peer.address) if peer.address else None,
                    "remote": peer.remote,
                    "error": peer.last_error,
                }
                for peer in status.peers
            ],
            "sessions": len(status.sessions),
        }
    return {
        "node": node,
        "router_error": error,
        "queue": [
            {
                "destination": dest.destination,
                "recipients": dest.recipients,
                "next_attempt": dest.next_attempt,
                "last_error": dest.last_error,
            }
            for dest in queue.summary()
        ],
        "identities": [
            {"first_seen": seen, "key": key, "address": address} for seen, key, address in identity_history()
        ],
    }


async def cmd_backup(reactor: Any, config: Config, args: argparse.Namespace) -> None:
    """``backup FILE``: a consistent copy of the SQLite database (PostgreSQL: use pg_dump)."""
    if not isinstance(database.obj, peewee.SqliteDatabase):
        raise UserError(f"{PG_DUMP_HINT}, e.g. pg_dump -Fc -f {args.file} DBNAME (as its owner)")
    target = Path(args.file)
    backup_sqlite(database.obj, target)
    print(f"backed up {config.database} to {target} (mode 0600)")


def _print_node(status: NodeStatus) -> None:
    identity = status.identity
    print(f"address:  {identity.address}")
    print(f"domain:   {domain_for(identity.address)}")
    print(f"key:      {identity.key.hex()}")
    print(f"router:   {identity.describe_router()}")
    print(f"tun:      {'enabled ' + (status.tun.name or '') if status.tun.enabled else 'DISABLED'}")
    up = [peer for peer in status.peers if peer.up]
    down = len(status.peers) - len(up)
    print(f"peers:    {len(up)} up" + (f", {down} down" if down else ""))
    for peer in status.peers:
        if peer.up:
            print(f"  up    {peer.address}  {peer.remote or ''}")
        else:
            reason = f"  ({peer.last_error})" if peer.last_error else ""
            print(f"  down  {peer.address or peer.remote or '?'}{reason}")
    print(f"sessions: {len(status.sessions)}")
    _print_identity_changes(identity.key.hex())


def _print_queue(now: float) -> None:
    summary = queue.summary()
    print(f"queue:    {sum(d.recipients for d in summary)} recipient(s) waiting")
    for dest in summary:
        wait = max(0, round(dest.next_attempt - now))
        error = dest.last_error or "none yet"
        print(f"  {dest.destination}  {dest.recipients} waiting, next try in {wait}s, last error: {error}")


def _print_identity_changes(current_key: str) -> None:
    """Say loudly when the router's key is not the one this node served mail for."""
    history = identity_history()
    for (_, _, old), (seen, _, new) in zip(history, history[1:], strict=False):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seen))
        old_domain = domain_for(ipaddress.IPv6Address(old))
        print(f"WARNING:  the router's key changed at {when}: mail for {old_domain} is no longer accepted")
        print(f"          (address {old} -> {new})")
    if history and history[-1][1] != current_key:
        served = domain_for(ipaddress.IPv6Address(history[-1][2]))
        print(f"WARNING:  the router's key is not the one ygbridge last served mail for ({served});")
        print("          the service moves to the new address when it next reads the router")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ygbridge`` command."""
    top = argparse.ArgumentParser(prog="ygbridge", description="Mail for the Yggdrasil mesh.")
    top.add_argument(
        "--config",
        "-c",
        default=os.environ.get("YGBRIDGE_CONFIG") or DEFAULT_CONFIG,
        help=f"configuration file (INI); default $YGBRIDGE_CONFIG, else {DEFAULT_CONFIG}",
    )
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the database and the TLS certificate").set_defaults(run=cmd_init)
    user = commands.add_parser("user", help="manage user accounts").add_subparsers(
        dest="action", required=True
    )
    for action, run, needs_password in (
        ("add", cmd_user_add, True),
        ("passwd", cmd_user_passwd, True),
        ("del", cmd_user_del, False),
    ):
        sub = user.add_parser(action)
        sub.add_argument("name")
        if needs_password:
            sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        if action == "add":
            sub.add_argument("--qr", action="store_true", help=QR_HELP)
        sub.set_defaults(run=run)
    user.add_parser("list").set_defaults(run=cmd_user_list)
    address = commands.add_parser("address", help="print a user's mail address")
    address.add_argument("name")
    address.set_defaults(run=cmd_address)
    link = commands.add_parser("login-link", help="print a user's client settings and dclogin: link")
    link.add_argument("name")
    link.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    link.add_argument("--host", help="where clients reach this machine (default: the listeners' addresses)")
    link.add_argument("--qr", action="store_true", help=QR_HELP)
    link.set_defaults(run=cmd_login_link)
    status = commands.add_parser("status", help="node identity, peers and queue")
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts and monitoring")
    status.set_defaults(run=cmd_status)
    backup = commands.add_parser("backup", help="copy the SQLite database to a new FILE while the node runs")
    backup.add_argument("file")
    backup.set_defaults(run=cmd_backup)
    return top


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the console script: the command runs under the reactor, and its status is
    the exit status of the process."""
    react(_main, (parser().parse_args(argv),))


async def _main(reactor: Any, args: argparse.Namespace) -> None:
    command = Deferred.fromCoroutine(run(reactor, args))
    reactor.addSystemEventTrigger("before", "shutdown", command.cancel)  # Ctrl-C while it waits
    raise SystemExit(await command)


async def run(reactor: Any, args: argparse.Namespace) -> int:
    """Run the command in ``args``; its exit status. Errors for people are one line on stderr."""
    try:
        config = load_config(args.config)
        connect(config.database, config.base_dir)
        status: int | None = await args.run(reactor, config, args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
    except YgbridgeError as exc:
        print(f"ygbridge: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped reading: say nothing more, and let no later flush fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (KeyboardInterrupt, CancelledError):
        return EXIT_INTERRUPTED
    return status or 0


if __name__ == "__main__":
    main()
