"""Every bound on what a remote party can make the node spend, with its default ([limits] section).

One frozen value, read once from the configuration and handed to the protocols, the login gate
and the listeners. SECURITY.md names the threat each one answers and the test that proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

Kind = Literal["count", "size", "duration"]


def _count(default: int) -> int:
    return field(default=default, metadata={"kind": "count"})


def _size(default: int) -> int:
    return field(default=default, metadata={"kind": "size"})


def _duration(default: float) -> float:
    return field(default=default, metadata={"kind": "duration"})


KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on connections, commands, logins and mesh traffic; each is a ``[limits]`` key."""

    # Connections (0 for ``connections``: derived from the process's open-file limit)
    connections: int = _count(0)
    connections_per_mesh_node: int = _count(10)
    connections_per_client_ip: int = _count(20)
    # SMTP, both ports
    smtp_line: int = _size(2 * KiB)
    smtp_line_offences: int = _count(3)
    smtp_junk_commands: int = _count(100)
    smtp_idle: float = _duration(300.0)
    smtp_session: float = _duration(3600.0)
    recipients: int = _count(100)
    # Mesh receipt, per sending node and for the disk
    mesh_messages_per_hour: int = _count(1000)
    mesh_bytes_per_hour: int = _size(512 * MiB)
    min_free_disk: int = _size(256 * MiB)
    # IMAP
    imap_line: int = _size(64 * KiB)
    imap_literal: int = _size(64 * KiB)
    sequence_ranges: int = _count(10000)
    search_nesting: int = _count(32)
    search_keys: int = _count(1000)
    mailboxes_per_user: int = _count(1000)
    imap_unauth_idle: float = _duration(60.0)
    imap_login_within: float = _duration(300.0)
    imap_idle: float = _duration(1800.0)
    # Logins
    login_failures_per_source: int = _count(10)
    login_failures_per_user: int = _count(30)
    login_lockout: float = _duration(900.0)
    login_tracked: int = _count(10000)
    login_delay: float = _duration(0.5)
    login_delay_max: float = _duration(4.0)
    password_checks: int = _count(2)
    password_checks_waiting: int = _count(64)


def limit_kinds() -> dict[str, Kind]:
    """Each ``[limits]`` key and how its value is written."""
    return {f.name: f.metadata["kind"] for f in fields(Limits)}
