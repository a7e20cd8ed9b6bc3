"""Rows looked up by a list of exact keys, in one statement that both databases answer from the key's index.

A provisioning request reads a handful of rows it knows the keys of (a membership's group and user; the grants
it is about to write). One query for all of them saves round trips on PostgreSQL; its shape matters on SQLite:

- an ``OR`` of one exact match of the whole key per row is searched by index on both databases (PostgreSQL: a
  BitmapOr; SQLite: a multi-index OR), with every key column inside each branch: with a column factored out of
  the ``OR`` (the connector, say), SQLite searches by that column alone and reads every row that has it;
- a row-value ``IN`` list, or ``IN`` lists per column, send SQLite to a scan as well;
- a ``VALUES`` list joined to the table is searched by index on both, but is compiled again for each request.

The statement is built once per table, key, columns and number of keys; ``chunks`` of ``MAX_KEYS`` keep it small.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, bindparam, or_, select

#: Keys looked up by one statement.
MAX_KEYS = 100


@lru_cache(maxsize=256)
def _by_keys(table: Table, key: tuple[str, ...], columns: tuple[str, ...], count: int, live_only: bool) -> Select:
    statement = select(*(table.c[name] for name in columns)).where(or_(*(
        and_(*(table.c[name] == bindparam(f"{name}_{i}") for name in key)) for i in range(count))))
    return statement.where(table.c.deleted_at.is_(None)) if live_only else statement


def rows_by_keys(connection: Connection, table: Table, key: tuple[str, ...], keys: Sequence[tuple],
                 columns: tuple[str, ...], *, live_only: bool = False) -> list[Any]:
    """The rows of ``table`` whose ``key`` columns equal one of ``keys`` (``live_only``: not deleted), each as
    ``columns``; ``MAX_KEYS`` keys per statement."""
    rows: list[Any] = []
    for start in range(0, len(keys), MAX_KEYS):
        part = keys[start:start + MAX_KEYS]
        parameters = {f"{name}_{i}": value for i, values in enumerate(part) for name, value in zip(key, values, strict=True)}
        rows.extend(connection.execute(_by_keys(table, key, columns, len(part), live_only), parameters))
    return rows
