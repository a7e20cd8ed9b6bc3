"""Databases for the tests: a fresh PostgreSQL database per test, and the rows tests start from, written by the
store's own writers."""

from __future__ import annotations

import itertools
import os

from sqlmodel import Session

from connector.records import GrantRecord
from models.store import grant_row, upsert_grant_rows
from models.tables import Connector, utcnow

_db_counter = itertools.count()


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the test server, so every test starts clean."""
    import psycopg

    name = f"jumpsync_t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def add_connector(engine, name: str = "acme") -> int:
    """A registered connector's row id."""
    with Session(engine) as session:
        row = Connector(name=name, base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        return row.id


def add_group_members(engine, connector_id: int, group_id: str, user_ids: list[str]) -> None:
    """The group's live ``member`` grants, as a sync writes them."""
    with Session(engine) as session:
        upsert_grant_rows(session, [grant_row(connector_id, GrantRecord("group", group_id, "member", "user", user_id),
                                              "group", utcnow()) for user_id in user_ids])
        session.commit()
