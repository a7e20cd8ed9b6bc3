"""Bulk writes in the database's own dialect: ``INSERT ... ON CONFLICT DO UPDATE`` for many rows at once.

The domain writers (``models.store``) and the other modules that upsert (event cursors, snapshots, provisioning)
share this machinery; it knows tables and rows, not resources or grants. SQLite gets one DBAPI ``executemany``
of a statement compiled once; PostgreSQL gets ``COPY`` into a staging table for large batches. Both fast paths
convert each value with the column's own bind processor, so they store exactly what an ordinary insert stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session

T = TypeVar("T")
#: An ``INSERT`` with ``ON CONFLICT``: both dialects' own forms have it.
UpsertInsert = sqlite.Insert | postgresql.Insert

#: Rows per statement or ``IN`` list: well under SQLite's bound-parameter limit for the widest table.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: From this many rows, PostgreSQL upserts go through COPY into a staging table; fewer are not worth its extra
#: round trips.
COPY_MIN_ROWS = 200


def dialect_insert(dialect: str, table: Table) -> UpsertInsert:
    """``INSERT`` into ``table`` in the dialect's own form, which has ``ON CONFLICT`` (SQLite, PostgreSQL)."""
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise KeyError(dialect)


@lru_cache(maxsize=64)
def _upsert_statement(dialect: str, table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]) -> Insert:
    """Built once per table and dialect: building it (``excluded`` columns) costs more than a one-row upsert."""
    statement = dialect_insert(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={column: statement.excluded[column] for column in update_columns})


def bulk_upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: Sequence[str],
                update_columns: Sequence[str]) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update_columns`` for many rows (no two with the same keys).

    On PostgreSQL, a batch of ``COPY_MIN_ROWS`` or more is copied into a temporary staging table and upserted
    by one ``INSERT ... SELECT``; otherwise an executemany of the statement, in chunks.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        _copy_upsert(session, table, rows, keys, update_columns)
        return
    statement = _upsert_statement(dialect, table, tuple(keys), tuple(update_columns))
    if dialect == "sqlite":
        _sqlite_executemany(session, statement, table, rows)
        return
    for chunk in chunks(rows):
        session.execute(statement, list(chunk))


def _dbapi_cursor(session: Session) -> Any:
    """A cursor of the DBAPI connection under the session's transaction."""
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no DBAPI connection")
    return driver.cursor()


def _sqlite_executemany(session: Session, statement: Insert, table: Table, rows: list[dict[str, Any]]) -> None:
    """SQLite: the statement compiled once by SQLAlchemy, its parameters converted by the columns' own bind
    processors, one DBAPI ``executemany``.

    SQLAlchemy's per-row parameter building is general (any statement, any parameter); the store's rows are
    plain dicts of known columns, so the general path is skipped."""
    dialect = session.get_bind().dialect
    sql, names = _sqlite_plan(statement, tuple(rows[0]), dialect)
    cursor = _dbapi_cursor(session)
    try:
        cursor.executemany(sql, _bound(rows, _bind_processors(table, names, dialect)))
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _sqlite_plan(statement: Insert, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The SQL of ``statement`` for these columns, and the names of its parameters, in order."""
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    return str(compiled), tuple(compiled.positiontup or ())


@lru_cache(maxsize=64)
def _bind_processors(table: Table, names: tuple[str, ...], dialect: Dialect) -> tuple[tuple[str, Any], ...]:
    """(name, the column's bind processor or None) for each name: what SQLAlchemy applies to a parameter."""
    return tuple((name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names)


def _bound(rows: list[dict[str, Any]], processors: tuple[tuple[str, Any], ...]) -> list[tuple[Any, ...]]:
    """Each row's values in the processors' order, converted as SQLAlchemy converts them, so that the fast paths
    store exactly what an ordinary insert stores."""
    return [tuple(row[name] if process is None else process(row[name]) for name, process in processors)
            for row in rows]


def _copy_upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: Sequence[str],
                 update_columns: Sequence[str]) -> None:
    """PostgreSQL: COPY the rows into a per-connection staging table (emptied at commit), then one upsert.

    Runs in the session's transaction, so it commits or rolls back with the rest of the batch."""
    columns = tuple(rows[0])
    staging = f"staging_{table.name}"
    names = ", ".join(columns)
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in update_columns)
    cursor = _dbapi_cursor(session)
    try:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                       f"SELECT {names} FROM {table.name} WITH NO DATA")
        with cursor.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            for values in _bound(rows, _bind_processors(table, columns, session.get_bind().dialect)):
                copy.write_row(values)
        cursor.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
                       f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
        cursor.execute(f"TRUNCATE {staging}")
    finally:
        cursor.close()
