"""The access review export: every live grant with its principal and resource (docs/access.md, ``export``).

A large tenant has hundreds of thousands of grants, so the export is built for speed (bench/access_bench.py
measures it; docs/benchmarks.md has the numbers):

- one plain read of the live grants and one of the connector's resources, joined in Python through dicts.
  Joined in the database it is slower on both: SQLite has no hash join (a B-tree search per grant and per
  joined resource), and PostgreSQL sorts the wide joined rows on disk;
- the grants streamed in their key's order, as plain tuples from the DBAPI cursor (SQLAlchemy's Row objects are
  slower to make): SQLite walks the grants' unique index, which is quicker than reading them all and sorting in
  Python; PostgreSQL sorts them itself (``COLLATE "C"``: the order is code points on both databases) behind a
  server-side cursor;
- each principal, resource, via group, entitlement and timestamp is rendered once (``part``), and a row is
  only assembled from the rendered parts (``row``): a CSV or JSON line costs one string join, not thirteen
  field conversions.

The resources are read whole first (the join needs them); the grants come a batch at a time, so the memory an
export takes grows with the resources, not with the grants. The connection stays open until the last row.
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
    with engine.connect() as connection:
        with collector_paused():  # 465k tuples at xl, none in a cycle (access.collector)
            resources = _resources(connection, cid)
            provisioning = _app_provisioning(connection, cid)
        to_datetime = _datetime_reader(connection)
        yield from _joined(_ordered_grants(connection, cid), resources, provisioning, to_datetime, part, row)


#: Principal types that are never a resource or a via group: a principal's row in the resources map is replaced
#: by its rendering the first time it is met, so that the map and a cache do not both hold 100,000 users.
PEOPLE = frozenset({"user", "admin"})
#: The resources by type, then id: (name, email, status, live), or a person's ``_Principal`` once rendered.
Resources = dict[str, dict[str, Any]]


class _Principal(tuple):
    """A principal's rendered columns and its rendered ``principal_deleted`` (a tuple: indexed in the loop)."""

    __slots__ = ()


def _name(resources: Resources, kind: str, rid: str) -> str | None:
    return (resources.get(kind, {}).get(rid) or (None,))[0]


def _joined(grants: Iterator[tuple], resources: Resources, provisioning: dict[str, str],
            to_datetime: Callable[[Any], datetime | None], part: Part, row: Row) -> Iterator:
    deleted = {flag: part(DELETED, (flag,)) for flag in (False, True)}

    def principal(ptype: str, pid: str, known: tuple | None) -> _Principal:
        name, email, status, live = known if known else (None, None, None, False)
        return _Principal((part(PRINCIPAL, (ptype, pid, name, email, status)), deleted[not live]))

    for kind in PEOPLE:
        resources.setdefault(kind, {})
    others: dict[str, dict[str, _Principal]] = defaultdict(dict)  # principals that are also resources or vias
    held: dict[str, dict[str, Any]] = defaultdict(dict)
    vias: dict[str, Any] = {}
    entitlements: dict[str, Any] = {}
    stamps: dict[Any, Any] = {}  # grants written by one part share their first_seen_at
    for rtype, rid, entitlement, ptype, pid, via, first_seen in grants:
        if ptype in PEOPLE:
            people = resources[ptype]
            p = people.get(pid)
            if type(p) is not _Principal:
                p = people[pid] = principal(ptype, pid, p)
        else:
            p = others[ptype].get(pid)
            if p is None:
                p = others[ptype][pid] = principal(ptype, pid, resources.get(ptype, {}).get(pid))
        r = held[rtype].get(rid)
        if r is None:
            r = held[rtype][rid] = (part(RESOURCE, (rtype, rid, _name(resources, rtype, rid))),
                                    part(PROVISIONING, (provisioning.get(rid) if rtype == "app" else None,)))
        v = vias.get(via)
        if v is None:
            v = vias[via] = part(VIA, (via, _name(resources, "group", via)) if via else (None, None))
        e = entitlements.get(entitlement)
        if e is None:
            e = entitlements[entitlement] = part(ENTITLEMENT, (entitlement,))
        s = stamps.get(first_seen)
        if s is None:
            s = stamps[first_seen] = part(FIRST_SEEN, (iso(to_datetime(first_seen)),))
        yield row(p[0], r[0], e, v, s, p[1], r[1])


#: The grants' key, the export's order. PostgreSQL compares text by its database's collation unless told
#: ``COLLATE "C"`` (bytes: code points, as SQLite's default and Python's ``str`` order).
GRANT_KEY = ("resource_type", "resource_id", "entitlement", "principal_type", "principal_id", "via")
#: Grants taken from the cursor at a time.
GRANTS_BATCH = 5_000


def _ordered_grants(connection: Connection, cid: int) -> Iterator[tuple]:
    """The connector's live grants in key order, ``GRANT_KEY`` then ``first_seen_at``, streamed: SQLite walks
    the grants' unique index (no sort), PostgreSQL sorts in its own memory (the report's ``work_mem``) and sends the rows
    through a server-side cursor. The worker holds a batch, never the whole list."""
    postgres = connection.dialect.name == "postgresql"
    order = ", ".join(f'{column} COLLATE "C"' if postgres else column for column in GRANT_KEY)
    sql = (f"SELECT {', '.join(GRANT_KEY)}, first_seen_at FROM grants WHERE connector_id = :cid "
           f"AND deleted_at IS NULL ORDER BY {order}")
    raw = connection.connection
    if postgres:  # the sort in memory rather than on disk, for this transaction only
        from access.report import REPORT_WORK_MEM

        setting = raw.cursor()
        setting.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        setting.close()
    cursor = raw.cursor(name="jumpsync_export") if postgres else raw.cursor()
    try:
        _execute(connection, cursor, sql, cid)
        while batch := cursor.fetchmany(GRANTS_BATCH):
            yield from batch
    finally:
        cursor.close()


def _resources(connection: Connection, cid: int) -> Resources:
    """Type -> id -> (name, email, status, live) of every resource of the connector, live or deleted. A status is
    one string for all the rows that have it (the driver makes one per row: 100,000 users)."""
    out: Resources = defaultdict(dict)
    one: dict[str, str] = {}
    share = one.setdefault
    for kind, rid, name, email, status, deleted_at in _fetch(
            connection, "SELECT type, external_id, name, email, status, deleted_at FROM resources "
                        "WHERE connector_id = :cid", cid):
        out[kind][rid] = (name, email, share(status, status) if status else status, deleted_at is None)
    return out


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


def _fetch(connection: Connection, sql: str, cid: int) -> list[tuple]:
    """The rows of ``sql`` (whose one parameter is ``:cid``) as plain tuples from the DBAPI cursor."""
    cursor = connection.connection.cursor()
    try:
        _execute(connection, cursor, sql, cid)
        return cast(list[tuple], cursor.fetchall())  # a list from sqlite3 and psycopg; the DBAPI says Sequence
    finally:
        cursor.close()


def _execute(connection: Connection, cursor: Any, sql: str, cid: int) -> None:
    """``sql``, whose one parameter is ``:cid``, on a DBAPI cursor of ``connection``, in its driver's style."""
    if connection.dialect.paramstyle == "qmark":  # sqlite3
        cursor.execute(sql.replace(":cid", "?"), (cid,))
    else:  # psycopg: pyformat
        cursor.execute(sql.replace(":cid", "%(cid)s"), {"cid": cid})


def _datetime_reader(connection: Connection) -> Callable[[Any], datetime | None]:
    """What the column type makes of a raw timestamp of this database (SQLite stores text; psycopg gives
    datetimes): an aware UTC datetime, as an ORM read gives."""
    dialect = connection.dialect
    grants: Table = table_of(Grant)
    processor = grants.c.first_seen_at.type.dialect_impl(dialect).result_processor(dialect, None)
    return processor or (lambda value: value)
