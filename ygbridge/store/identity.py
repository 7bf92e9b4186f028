"""The router identity this node last served mail for (blocking functions for the DB thread)."""

from __future__ import annotations

from ygbridge.store.models import NodeRecord, database


def recorded_identity() -> tuple[str, str] | None:
    """The (key hex, address) recorded last, or None before the first start."""
    row = NodeRecord.select().order_by(NodeRecord.id.desc()).first()
    return (row.key, row.address) if row is not None else None


def record_identity(key: str, address: str, now: float) -> tuple[str, str] | None:
    """Record the router's identity; returns the previous one when the key has changed."""
    with database.atomic():
        previous = recorded_identity()
        if previous is not None and previous[0] == key:
            return None
        NodeRecord.create(key=key, address=address, seen=now)
    return previous


def identity_history() -> list[tuple[float, str, str]]:
    """Every identity this node has served mail for, oldest first: (first seen, key hex, address)."""
    return [(r.seen, r.key, r.address) for r in NodeRecord.select().order_by(NodeRecord.id)]
