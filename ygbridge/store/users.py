"""User accounts: blocking functions for the DB thread and the command line."""

from __future__ import annotations

import re

from ygbridge.errors import UserError
from ygbridge.store.mailboxes import add_default_mailboxes
from ygbridge.store.models import User, database

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """The canonical (lowercase) form of a user name; UserError if it cannot be one."""
    canonical = name.strip().lower()
    if not _NAME.match(canonical) or canonical.endswith("."):
        raise UserError(
            f"{name!r} is not a valid user name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return canonical


def add_user(name: str, password_hash: bytes, now: float) -> None:
    """Create a user with its default mailboxes."""
    name = check_name(name)
    with database.atomic():
        if User.get_or_none(User.name == name) is not None:
            raise UserError(f"user {name} already exists")
        user = User.create(name=name, password_hash=password_hash, created=now)
        add_default_mailboxes(user, now)


def _get(name: str) -> User:
    user = User.get_or_none(User.name == check_name(name))
    if user is None:
        raise UserError(f"no such user: {name}")
    return user


def set_password(name: str, password_hash: bytes) -> None:
    """Replace a user's password hash."""
    user = _get(name)
    user.password_hash = password_hash
    user.save()


def delete_user(name: str) -> None:
    """Delete a user with all mailboxes and messages."""
    user = _get(name)
    with database.atomic():
        user.delete_instance(recursive=True)


def list_users() -> list[str]:
    """All user names, sorted."""
    return [u.name for u in User.select(User.name).order_by(User.name)]


def password_hash(name: str) -> bytes | None:
    """The stored hash of a user's password, or None if there is no such user."""
    user = User.get_or_none(User.name == name)
    return bytes(user.password_hash) if user is not None else None


def existing_users(names: list[str]) -> set[str]:
    """Which of ``names`` are users here."""
    return {u.name for u in User.select(User.name).where(User.name.in_(names))}
