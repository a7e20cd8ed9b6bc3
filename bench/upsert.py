"""The database side of the bound: how fast the database takes rows, bare and through the project's writers.

For each shape (resource rows, grant rows) and N rows built from the tenant's own records (mapped by the
connector's mappers; cycled with suffixed ids when N exceeds the tenant):
- ``bare``: one SQLAlchemy Core ``executemany`` of ``INSERT ... ON CONFLICT (key) DO UPDATE`` (the store's own
  conflict target and update columns) into a scratch copy of the table (same columns, constraints, indexes and
  foreign key), rows prepared beforehand, one transaction: the rate nothing built on SQLAlchemy can beat much.
- ``writer``: the project's ``ResourceWriter.write`` (batches of ``RESOURCE_BATCH`` records, as a sync part calls
  it) or ``GrantWriter.write_scopes`` (``GRANT_BATCH_SCOPES`` scopes a call), into the real table, from records
  (on PostgreSQL the writer takes the COPY path for batches of ``COPY_MIN_ROWS`` rows or more).
- ``copy`` (PostgreSQL only): COPY into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT``.
Each is timed in a fresh, migrated scratch database of the run's kind (SQLite file next to the run's database,
or a new database on the run's PostgreSQL server), twice with the order swapped; the best of the two is kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial

from sqlalchemy import MetaData, Table, UniqueConstraint, insert, select

from connector.groups import member_grants
from connector.records import GrantRecord, ResourceRecord
from connector.users import map_user
from models.bulk import chunks, dialect_insert
from models.db import make_engine
from models.migrate import upgrade
from models.store import (
    GRANT_KEY,
    RESOURCE_KEY,
    RESOURCE_UPDATE,
    GrantWriter,
    ResourceWriter,
    grant_row,
    resource_row,
)
from models.tables import Connector, Grant, Resource
from pipeline.parts import GRANT_BATCH_SCOPES, RESOURCE_BATCH

GRANT_UPDATE = ("source", "deleted_at")
PAGE = RESOURCE_BATCH       # records per ResourceWriter.write call, as a sync part makes them
SCOPES = GRANT_BATCH_SCOPES  # scopes per GrantWriter.write_scopes call


def _cycled(base: list, n: int, field: str) -> list:
    """``n`` records from ``base``, cycled; from the second lap on, ``field`` gets the lap as a suffix so that
    every record stays distinct."""
    return [record if lap == 0 else replace(record, **{field: f"{getattr(record, field)}-{lap}"})
            for lap, record in ((i // len(base), base[i % len(base)]) for i in range(n))]


def resource_records(dump: dict, n: int) -> list[ResourceRecord]:
    return _cycled([map_user(u) for u in dump["users"]], n, "id")


def grant_records(dump: dict, n: int) -> list[GrantRecord]:
    return _cycled([g for group in dump["groups"] for g in member_grants(group["id"], [
        {"to": {"type": "user", "id": uid}} for uid in group["members"]])], n, "resource_id")


def scratch_copy(source: Table, name: str) -> Table:
    """The table under another name, with its constraints and indexes (renamed) and its foreign key."""
    metadata = MetaData()
    Connector.__table__.to_metadata(metadata)  # the foreign key's target, already in the database
    copy = source.to_metadata(metadata, name=name)
    for index in copy.indexes:
        index.name = f"{name}_{index.name}"
    for constraint in copy.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.name:
            constraint.name = f"{name}_{constraint.name}"
    return copy


def _insert(dialect: str, table: Table, keys, update_columns):
    statement = dialect_insert(dialect, table)
    return statement.on_conflict_do_update(index_elements=list(keys),
                                           set_={c: statement.excluded[c] for c in update_columns})


def _connector(engine, name: str) -> int:
    with engine.begin() as conn:
        conn.execute(insert(Connector.__table__).values(name=name, base_url="http://127.0.0.1",
                                                        created_at=datetime.now(timezone.utc)))
        return conn.execute(select(Connector.__table__.c.id).where(Connector.__table__.c.name == name)).scalar_one()


def _bare(engine, table: Table, keys, update_columns, rows: list[dict]) -> float:
    statement = _insert(engine.dialect.name, table, keys, update_columns)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(statement, rows)
    return time.perf_counter() - started


def _copy(engine, table: Table, keys, update_columns, rows: list[dict]) -> float:
    """PostgreSQL: COPY into a temporary staging table, then one INSERT ... SELECT ... ON CONFLICT."""
    columns = list(rows[0])
    cols = ", ".join(columns)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in update_columns)
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"CREATE TEMP TABLE staging (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY staging ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(v) if isinstance(v, dict) else v for v in row.values()])
        cur.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM staging "
                    f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def _resource_writer(engine, connector_id: int, records: list[ResourceRecord]) -> float:
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    writer = ResourceWriter(engine, connector_id, "user", now)
    for page in chunks(records, PAGE):
        writer.write(page)
    elapsed = time.perf_counter() - started
    assert writer.counts["rows_written"] == len({r.id for r in records}), writer.counts
    return elapsed


def _grant_writer(engine, connector_id: int, grants: list[GrantRecord]) -> float:
    now = datetime.now(timezone.utc)
    scopes: dict[str, list[GrantRecord]] = {}
    for grant in grants:
        scopes.setdefault(grant.resource_id, []).append(grant)
    ids = list(scopes)
    started = time.perf_counter()
    writer = GrantWriter(engine, connector_id, "group", "group", now)
    for batch in chunks(ids, SCOPES):
        writer.write_scopes({rid: scopes[rid] for rid in batch})
    elapsed = time.perf_counter() - started
    assert writer.counts["rows_written"] == len(grants), writer.counts
    return elapsed


def measure(new_database: Callable[[str], str], dump: dict, n: int) -> dict:
    """Rates (rows/s) of bare, writer (and, on PostgreSQL, copy) for both shapes; best of two rounds."""
    resources = resource_records(dump, n)
    grants = grant_records(dump, n)
    now = datetime.now(timezone.utc)
    best: dict[str, float] = {}
    dialect = None

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for round_ in range(2):
        url = new_database(f"upsert{round_}")
        engine = make_engine(url)
        try:
            upgrade(engine)
            dialect = engine.dialect.name
            bench_resources = scratch_copy(Resource.__table__, "bench_resources")
            bench_grants = scratch_copy(Grant.__table__, "bench_grants")
            bench_resources.metadata.create_all(engine, tables=[bench_resources])
            bench_grants.metadata.create_all(engine, tables=[bench_grants])
            bare_cid, writer_cid, copy_cid = (_connector(engine, f"bench-{k}") for k in ("bare", "writer", "copy"))
            resource_rows = [resource_row(bare_cid, r, now) for r in resources]
            grant_rows = [grant_row(bare_cid, g, "group", now) for g in grants]
            steps = [
                ("resource_bare", partial(_bare, engine, bench_resources, RESOURCE_KEY, RESOURCE_UPDATE, resource_rows)),
                ("resource_writer", partial(_resource_writer, engine, writer_cid, resources)),
                ("grant_bare", partial(_bare, engine, bench_grants, GRANT_KEY, GRANT_UPDATE, grant_rows)),
                ("grant_writer", partial(_grant_writer, engine, writer_cid, grants)),
            ]
            if dialect == "postgresql":
                copy_resources = [resource_row(copy_cid, r, now) for r in resources]
                copy_grants = [grant_row(copy_cid, g, "group", now) for g in grants]
                steps.append(("resource_copy", partial(_copy, engine, bench_resources, RESOURCE_KEY, RESOURCE_UPDATE,
                                                       copy_resources)))
                steps.append(("grant_copy", partial(_copy, engine, bench_grants, GRANT_KEY, GRANT_UPDATE, copy_grants)))
            if round_:
                steps.reverse()
            for name, step in steps:
                keep(name, step())
        finally:
            engine.dispose()
    out: dict = {"rows": n, "dialect": dialect, "method": "best of 2 rounds, fresh database each, order swapped"}
    for shape in ("resource", "grant"):
        rates = {kind: round(n / best[f"{shape}_{kind}"]) for kind in ("bare", "writer", "copy")
                 if f"{shape}_{kind}" in best}
        rates["writer_vs_bare"] = round(rates["writer"] / rates["bare"], 2)
        out[shape] = rates
    return out
