"""The access review export: every live grant with its principal and resource (docs/access.md, ``export``).

A large tenant has hundreds of thousands of grants, so the export is built for speed (bench/access_bench.py
measures it; docs/benchmarks.md has the numbers):

- one plain read of the live grants and one of the connector's resources, joined in Python through dicts.
  Joined in the database it is slower on both: SQLite has no hash join (a B-tree search per grant and per
  joined resource), and PostgreSQL sorts the wide joined rows on disk;
- rows straight from the DBAPI cursor and sorted by Python: SQLAlchemy's Row objects are slower to fetch
  and to sort, and the database's ``ORDER BY`` on the grants' key (SQLite: the unique index, a table lookup
  per row; PostgreSQL: a sort spilled to disk) is slower than ``list.sort``. The order is
  Python's string order (code points) on both databases;
- each principal, resource, via group, entitlement and timestamp is rendered once (``part``), and a row is
  only assembled from the rendered parts (``row``): a CSV or JSON line costs one string join, not thirteen
  field conversions.

The grants are read whole before the first row is rendered (the sort needs them), each distinct value held once
(about 0.1KB of memory per grant), and the database connection is returned before any output is written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table
from sqlmodel import Session

from access.collector import collector_paused
from models.columns import iso
from models.queries import connector_id
from models.tables import Grant, table_of

EXPORT_COLUMNS = (
    "principal_type", "principal_id", "principal_name", "principal_email", "principal_status",
    "resource_type", "resource_id", "resource_name", "entitlement", "via_id", "via_name", "first_seen_at",
    "principal_deleted", "resource_provisioning",
)
#: The first column of each part a row is made of: principal (5 columns), resource (3), entitlement (1),
#: via (2), first seen (1), principal deleted (1), resource provisioning (1: an app's ``provisioning``, e.g.
#: "scim" or "none"; null for other resources and apps whose provisioning is unknown).
PRINCIPAL, RESOURCE, ENTITLEMENT, VIA, FIRST_SEEN, DELETED, PROVISIONING = 0, 5, 8, 9, 11, 12, 13

T = TypeVar("T")
#: ``part(first_column, values)``: the rendering of consecutive columns' values.
Part = Callable[[int, tuple], T]
#: ``row(principal, resource, entitlement, via, first_seen, deleted, provisioning)``: a row from its rendered parts.
Row = Callable[..., Any]


def _values(_: int, values: tuple) -> tuple:
    return values


def _tuple_row(*parts: tuple) -> tuple:
    p, r, e, v, s, d, a = parts
    return (*p, *r, *e, *v, *s, *d, *a)


def iter_export(engine: Engine, connector: str) -> Iterator[tuple]:
    """Every live grant as a tuple in ``EXPORT_COLUMNS`` order, ordered by the grant's key: resource type,
    resource id, entitlement, principal type, principal id, via. Raises UnknownConnector at once."""
    return export_rows(engine, connector, _values, _tuple_row)


def export(engine: Engine, connector: str) -> list[dict[str, Any]]:
    """``iter_export`` as a list of dicts keyed by ``EXPORT_COLUMNS``."""
    return [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in iter_export(engine, connector)]


def export_rows(engine: Engine, connector: str, part: Part, row: Row) -> Iterator:
    """``iter_export``'s rows, each made by ``row`` from parts rendered by ``part`` (each distinct principal,
    resource, via group, entitlement and timestamp rendered once). Raises UnknownConnector at once, before
    any row is asked for."""
    with Session(engine) as session:
        cid = connector_id(session, connector)
    return _rows(engine, cid, part, row)


def _rows(engine: Engine, cid: int, part: Part, row: Row) -> Iterator:
    with collector_paused(), engine.connect() as connection:  # 465k tuples at xl, none in a cycle (access.collector)
        resources = _resources(connection, cid)
        provisioning = _app_provisioning(connection, cid)
        grants = _fetch(connection, "SELECT resource_type, resource_id, entitlement, principal_type, principal_id, "
                                    "via, first_seen_at FROM grants WHERE connector_id = :cid AND deleted_at IS NULL",
                        cid, shared=True)
        to_datetime = _datetime_reader(connection)
        grants.sort()  # the key's columns come first, in the key's order; the key is unique
    deleted = {flag: part(DELETED, (flag,)) for flag in (False, True)}
    principals: dict[str, dict[str, tuple]] = defaultdict(dict)
    held: dict[str, dict[str, Any]] = defaultdict(dict)
    vias: dict[str, Any] = {}
    entitlements: dict[str, Any] = {}
    stamps: dict[Any, Any] = {}  # grants written by one part share their first_seen_at
    for rtype, rid, entitlement, ptype, pid, via, first_seen in grants:
        p = principals[ptype].get(pid)
        if p is None:
            known = resources.get((ptype, pid))
            name, email, status, live = known if known else (None, None, None, False)
            p = principals[ptype][pid] = (part(PRINCIPAL, (ptype, pid, name, email, status)), deleted[not live])
        r = held[rtype].get(rid)
        if r is None:
            r = held[rtype][rid] = (part(RESOURCE, (rtype, rid, (resources.get((rtype, rid)) or (None,))[0])),
                                    part(PROVISIONING, (provisioning.get(rid) if rtype == "app" else None,)))
        v = vias.get(via)
        if v is None:
            v = vias[via] = part(VIA, (via, (resources.get(("group", via)) or (None,))[0]) if via else (None, None))
        e = entitlements.get(entitlement)
        if e is None:
            e = entitlements[entitlement] = part(ENTITLEMENT, (entitlement,))
        s = stamps.get(first_seen)
        if s is None:
            s = stamps[first_seen] = part(FIRST_SEEN, (iso(to_datetime(first_seen)),))
        yield row(p[0], r[0], e, v, s, p[1], r[1])


def _resources(connection: Connection, cid: int) -> dict[tuple[str, str], tuple]:
    """(type, id) -> (name, email, status, live) of every resource of the connector, live or deleted."""
    return {(kind, rid): (name, email, status, deleted_at is None) for kind, rid, name, email, status, deleted_at
            in _fetch(connection, "SELECT type, external_id, name, email, status, deleted_at FROM resources "
                                  "WHERE connector_id = :cid", cid)}


def _app_provisioning(connection: Connection, cid: int) -> dict[str, str]:
    """App id -> its profile's ``provisioning`` (``connector.apps.provisioning_of``), where known."""
    out = {}
    for rid, profile in _fetch(connection, "SELECT external_id, profile FROM resources WHERE connector_id = :cid "
                                           "AND type = 'app'", cid):
        if isinstance(profile, str):  # SQLite keeps JSON as text; psycopg decodes it
            profile = json.loads(profile)
        value = (profile or {}).get("provisioning")
        if isinstance(value, str):
            out[rid] = value
    return out


#: Rows taken from the DBAPI cursor at a time by ``_fetch(shared=True)``.
FETCH_BATCH = 10_000


def _fetch(connection: Connection, sql: str, cid: int, *, shared: bool = False) -> list[tuple]:
    """The rows of ``sql`` (whose one parameter is ``:cid``) as plain tuples from the DBAPI cursor.

    ``shared``: equal values of the rows are one object. The driver makes a new string for every value of
    every row, and the grants repeat theirs (a type, an app, a group, a user, a part's timestamp): held once,
    the grants take a fifth of the memory."""
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.paramstyle == "qmark":  # sqlite3
            cursor.execute(sql.replace(":cid", "?"), (cid,))
        else:  # psycopg: pyformat
            cursor.execute(sql.replace(":cid", "%(cid)s"), {"cid": cid})
        if not shared:
            return cast(list[tuple], cursor.fetchall())  # a list from sqlite3 and psycopg; the DBAPI: Sequence
        values: dict[Any, Any] = {}
        one = values.setdefault
        rows: list[tuple] = []
        while batch := cursor.fetchmany(FETCH_BATCH):
            rows += [tuple(map(one, row, row)) for row in batch]
        return rows
    finally:
        cursor.close()


def _datetime_reader(connection: Connection) -> Callable[[Any], datetime | None]:
    """What the column type makes of a raw timestamp of this database (SQLite stores text; psycopg gives
    datetimes): an aware UTC datetime, as an ORM read gives."""
    dialect = connection.dialect
    grants: Table = table_of(Grant)
    processor = grants.c.first_seen_at.type.dialect_impl(dialect).result_processor(dialect, None)
    return processor or (lambda value: value)
