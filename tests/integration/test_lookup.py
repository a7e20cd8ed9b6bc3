"""Rows by a list of exact keys (models.lookup), on SQLite and PostgreSQL: the right rows, and an index search
per key rather than a read of every row of the connector (which SQLite does for other shapes of the question)."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

from connector.records import ResourceRecord
from models.lookup import MAX_KEYS, _by_keys, rows_by_keys
from models.store import GRANT_KEY, RESOURCE_KEY, resource_row, upsert_resource_rows
from models.tables import Grant, Resource, utcnow
from tests.support.databases import add_connector, add_group_members

MEMBERS = [f"{i:024x}" for i in range(1500)]


def _filled(engine) -> int:
    """1,500 users in one group, with statistics: enough rows that reading them all costs more than the index."""
    cid = add_connector(engine)
    with Session(engine) as session:
        upsert_resource_rows(session, [resource_row(cid, ResourceRecord("user", m, f"user {m}"), utcnow())
                                       for m in MEMBERS])
        session.commit()
    add_group_members(engine, cid, "g" * 24, MEMBERS)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("ANALYZE grants, resources"))
            connection.commit()
    return cid


def _plan(engine, statement, parameters: dict) -> str:
    compiled = statement.compile(engine)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return " ".join(row[3] for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), tuple(parameters[name] for name in compiled.positiontup)))
        return " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + str(compiled), parameters))


def test_rows_by_keys_finds_exactly_the_keys_given(engine):
    cid = _filled(engine)
    wanted = [(cid, "group", "g" * 24, "member", "user", m, "") for m in MEMBERS[::3]]  # 500: several statements
    missing = [(cid, "group", "g" * 24, "member", "user", "f" * 24, ""), (cid + 1, *wanted[0][1:])]
    with engine.connect() as connection:
        rows = rows_by_keys(connection, Grant.__table__, GRANT_KEY, wanted + missing, ("principal_id",))
    assert len(wanted) > MAX_KEYS and sorted(r.principal_id for r in rows) == sorted(MEMBERS[::3])


def test_each_key_is_searched_by_index(engine):
    cid = _filled(engine)
    for table, key in ((Grant.__table__, GRANT_KEY), (Resource.__table__, RESOURCE_KEY)):
        statement = _by_keys(table, key, ("id",), 3, table is Resource.__table__)
        parameters = {f"{name}_{i}": (cid if name == "connector_id" else f"{name}-{i}") for i in range(3)
                      for name in key}
        plan = _plan(engine, statement, parameters)
        if engine.dialect.name == "sqlite":  # every key column in the search, not the connector alone
            assert "SCAN" not in plan and " AND ".join(f"{name}=?" for name in key) in plan, plan
        else:
            assert "Seq Scan" not in plan and "BitmapOr" in plan, plan
