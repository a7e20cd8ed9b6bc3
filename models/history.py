"""Change history: what each sync (and each provisioning request) changed, stored compactly.

The writers in ``models.store`` call ``record`` in the same transaction as the rows they change, so history
and data cannot disagree. ``prune`` drops what is older than the retention; ``changes`` reads it back.

The first sync of a type is its baseline and records no history (``models.store``): every row would be
"created", and at 100,000 accounts that would double the first sync's writes. What a baseline stored is in its
parts' counts instead (``baseline``, ``grants_baseline``), which ``baselines`` reads, so that ``jumpsync changes``
says where history starts rather than "no changes" after a first sync of 500 accounts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, String, delete, func, insert, select
from sqlalchemy import cast as sql_cast
from sqlmodel import Session, col

from connector.records import GrantRecord, ResourceRecord
from models.columns import iso
from models.queries import connector_id, resource_name
from models.read_records import BaselineRecord
from models.states import Trigger
from models.tables import Change, SyncPart, SyncRun, table_of

#: Resource columns compared for an update; the profile is compared key by key ("profile.department").
_COLUMNS = ("name", "email", "status")


def field_changes(old: dict[str, Any], new: ResourceRecord) -> dict[str, list]:
    """``{"field": [old, new]}`` for every field that differs between a stored row and a fresh record."""
    out: dict[str, list] = {}
    for column in _COLUMNS:
        before, after = old.get(column), getattr(new, column)
        if before != after:
            out[column] = [before, after]
    old_profile, new_profile = old.get("profile") or {}, new.profile or {}
    for key in sorted(set(old_profile) | set(new_profile)):
        if old_profile.get(key) != new_profile.get(key):
            out[f"profile.{key}"] = [old_profile.get(key), new_profile.get(key)]
    return out


def resource_change(connector_id: int, change: str, resource_type: str, resource_id: str, at: datetime, *,
                    run_id: int | None = None, request_id: str | None = None,
                    fields: dict | None = None) -> dict[str, Any]:
    return {"connector_id": connector_id, "run_id": run_id, "request_id": request_id, "at": at,
            "subject": "resource", "change": change, "resource_type": resource_type, "resource_id": resource_id,
            "entitlement": None, "principal_type": None, "principal_id": None, "via": None, "fields": fields}


def grant_change(connector_id: int, change: str, grant: GrantRecord, at: datetime, *, run_id: int | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    return {"connector_id": connector_id, "run_id": run_id, "request_id": request_id, "at": at,
            "subject": "grant", "change": change, "resource_type": grant.resource_type,
            "resource_id": grant.resource_id, "entitlement": grant.entitlement,
            "principal_type": grant.principal_type, "principal_id": grant.principal_id,
            "via": grant.via or None, "fields": None}


def record(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(table_of(Change)), rows)


def prune(engine: Engine, older_than: datetime) -> int:
    with Session(engine) as session:
        table = table_of(Change)
        result = cast(CursorResult[Any], session.execute(delete(table).where(table.c.at < older_than)))
        session.commit()
        return result.rowcount or 0


def changes(engine: Engine, connector: str, *, since: datetime | None = None, resource_type: str | None = None,
            limit: int | None = 10000) -> list[dict[str, Any]]:
    """Changes of a connector, oldest first (the stable JSON shape of ``jumpsync changes --json``); all of them
    when ``limit`` is None."""
    table = table_of(Change)
    with Session(engine) as session:
        # The names are looked up for the rows of the page only: a table of 200 changes probes 600 names at most.
        page = _matching(session, connector, since, resource_type, select(table)).order_by(
            table.c.at, table.c.id).limit(limit).subquery()
        named = select(page, resource_name(page.c.connector_id, page.c.resource_type,
                                           page.c.resource_id).label("resource_name"),
                       resource_name(page.c.connector_id, page.c.principal_type,
                                     page.c.principal_id).label("principal_name"),
                       resource_name(page.c.connector_id, "group", page.c.via).label("via_name"))
        rows = session.execute(named.order_by(page.c.at, page.c.id)).mappings().all()

    return [{"at": iso(r["at"]), "run_id": r["run_id"], "request_id": r["request_id"], "subject": r["subject"],
             "change": r["change"], "resource_type": r["resource_type"], "resource_id": r["resource_id"],
             "entitlement": r["entitlement"], "principal_type": r["principal_type"],
             "principal_id": r["principal_id"], "via": r["via"], "fields": r["fields"],
             "resource_name": r["resource_name"], "principal_name": r["principal_name"],
             "via_name": r["via_name"]} for r in rows]


def count_changes(engine: Engine, connector: str, *, since: datetime | None = None,
                  resource_type: str | None = None) -> int:
    """How many changes ``changes`` would list without a limit (a table shows the first ones and says how many
    more there are, without reading them)."""
    with Session(engine) as session:
        return session.execute(_matching(session, connector, since, resource_type,
                                         select(func.count()).select_from(table_of(Change)))).scalar_one()


def _matching(session: Session, connector: str, since: datetime | None, resource_type: str | None, query):
    """``query`` restricted to the connector's changes (UnknownConnector if it has none), since a time, of a type."""
    table = table_of(Change)
    cid = connector_id(session, connector)
    query = query.where(table.c.connector_id == cid)
    if since is not None:
        query = query.where(table.c.at >= since)
    if resource_type is not None:
        query = query.where(table.c.resource_type == resource_type)
    return query


def baselines(engine: Engine, connector: str, *, since: datetime | None = None,
              resource_type: str | None = None) -> list[BaselineRecord]:
    """The runs that stored a baseline (the first sync of a type), oldest first: from ``since`` on, and of
    ``resource_type`` (then without grants: a part's grant count does not say of which type). A fetch or
    derive part is named after the resource type it writes, so its ``baseline`` count is of that type."""
    with Session(engine) as session:
        cid = connector_id(session, connector)
        rows = session.execute(
            select(col(SyncRun.id), col(SyncRun.started_at), col(SyncPart.name), col(SyncPart.counts))
            .join(SyncPart, col(SyncPart.run_id) == col(SyncRun.id))
            .where(col(SyncRun.connector_id) == cid, col(SyncRun.trigger) != Trigger.EVENTS,
                   # the parts that counted a baseline, without decoding the counts of every part ever run
                   sql_cast(col(SyncPart.counts), String).like('%baseline"%'))
            .order_by(col(SyncRun.started_at), col(SyncRun.id), col(SyncPart.id))).all()
    runs: dict[int, tuple[datetime, dict[str, int], list[int]]] = {}
    for run_id, started_at, part, counts in rows:
        _, resources, grants = runs.setdefault(run_id, (started_at, {}, [0]))
        if counts.get("baseline"):
            resources[part] = resources.get(part, 0) + counts["baseline"]
        grants[0] += counts.get("grants_baseline", 0)
    records = [BaselineRecord(run_id, at, first=index == 0, resources=resources, grants=grants[0])
               for index, (run_id, (at, resources, grants)) in enumerate(runs.items())]
    if resource_type is not None:
        records = [replace(r, resources={resource_type: r.resources[resource_type]}, grants=0)
                   for r in records if resource_type in r.resources]
    return [r for r in records if since is None or r.started_at >= since]
