"""Engine and session for SQLite (default) and PostgreSQL.

SQLite is put in WAL mode with a busy timeout, because several worker processes write to it at once. Its WAL is
checkpointed every 10,000 pages (40 MB) rather than SQLite's 1,000: a sync writes in 1,000-row transactions that
rewrite the same index pages, and each checkpoint copies them into the database and syncs it to disk, so fewer
checkpoints mean faster bulk writes (bench/upsert measures them). The file is cut back to 64 MB after a
checkpoint. With ``synchronous=NORMAL`` a power cut or an OS crash (not a process crash) may lose the
transactions since the last checkpoint; the database stays consistent, a sync writes them again, and
provisioning actions are idempotent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import URL, Connection, Engine, event
from sqlmodel import Session, create_engine

from connector.records import json_text
from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: Connections an engine keeps open (SQLAlchemy's default unless set): a provisioning worker on threads sets it
#: to its requests in flight, each of which holds one while JumpCloud answers (``cli.processes.worker``).
POOL_SIZE_ENV = "JUMPSYNC_DB_POOL_SIZE"


def _pool_size() -> dict[str, int]:
    value = os.environ.get(POOL_SIZE_ENV, "")
    return {"pool_size": int(value), "max_overflow": 10} if value.isdigit() and int(value) > 0 else {}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               json_serializer=json_text, **_pool_size())
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, json_serializer=json_text, **_pool_size())


def missing_sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names when it does not exist yet, else None (another database, an in-memory one, one
    that exists). SQLite creates the file on the first connection: a command that only reads must look first, or
    it leaves an empty database behind."""
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name)
    return None if path.exists() else path.resolve()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per URL per process (a forked worker child builds its own on first use)."""
    return make_engine(url)


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


@contextmanager
def session_on(bind: Engine | Session, *, commit: bool) -> Iterator[Session]:
    """The caller's session as it is (the caller commits), or a session of our own on an engine, committed at
    the end when ``commit``: for helpers that join a request's transaction or stand alone."""
    if isinstance(bind, Session):
        yield bind
        return
    with Session(bind) as own:
        yield own
        if commit:
            own.commit()


@contextmanager
def autocommit(connection: Connection) -> Iterator[Connection]:
    """``connection`` (not in a transaction) in autocommit mode for the block, then as it was: for a single
    statement that needs no transaction around it, which spares the BEGIN and COMMIT round trips on PostgreSQL.
    On an error the connection is rolled back (so that its mode can be set back) and the error raised."""
    level = connection.default_isolation_level
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield connection
        connection.commit()  # ends SQLAlchemy's (autobegun) transaction; the statement is already committed
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.execution_options(isolation_level=level)
