"""Which database drivers peewee may load in a process (decided before peewee is imported).

peewee imports every driver it finds installed (psycopg, psycopg2, pymysql) when it is first
imported; psycopg alone adds about 15 MiB to the service's resident memory. The service knows its
database URL before it imports the store, so for SQLite it keeps those drivers out.
"""

from __future__ import annotations

import sys

#: Drivers peewee tries to import, none of which a SQLite database needs.
SERVER_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi", "pymysql", "MySQLdb")


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgres://", "postgresql://"))


def load_only_for(url: str) -> None:
    """Keep peewee from importing the drivers that the database at ``url`` does not need (a
    SQLite URL: all of them). Call before peewee is first imported; a no-op after."""
    if "peewee" in sys.modules or is_postgresql(url):
        return
    for name in SERVER_DRIVERS:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import now raises ImportError
