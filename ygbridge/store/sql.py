"""Hand-written SQL for the statements every message runs (delivery, the queue): Peewee spends
several times longer building a statement than SQLite takes to run it (about 0.1 ms each).

Statements are written with ``?`` placeholders, which become the database's own (``%s`` on
PostgreSQL); values go as bound parameters, converted by the model's fields where Peewee would
convert them (blobs, dates). Blocking: for the DB thread, like the rest of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ygbridge.store.models import database


def execute(sql: str, params: Sequence[Any] = ()) -> Any:
    """Run one statement; its cursor."""
    return database.execute_sql(sql.replace("?", database.param), params)


def insert(sql: str, params: Sequence[Any]) -> int:
    """Run an ``INSERT`` of one row into a table with an ``id`` key; the new row's id."""
    if database.returning_clause:
        row = execute(sql + ' RETURNING "id"', params).fetchone()
        return int(row[0])
    return int(execute(sql, params).lastrowid)


def exists(sql: str, params: Sequence[Any]) -> bool:
    """Whether a ``SELECT`` finds a row."""
    return execute(sql + " LIMIT 1", params).fetchone() is not None


def int_list(numbers: Sequence[int]) -> str:
    """``(1,2,3)`` for an ``IN``: ints written into the SQL (nothing can be injected), where a
    bound parameter each would cost more than the statement; ``(NULL)``, which matches nothing,
    for none (PostgreSQL has no empty list)."""
    return "(" + (",".join(str(int(number)) for number in numbers) or "NULL") + ")"
