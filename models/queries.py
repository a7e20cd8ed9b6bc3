"""Read-side queries behind the CLI's JSON output. The dict shapes here are a documented, stable interface
(docs/cli-json.md): add keys, never rename or remove them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlmodel import Session

from models.columns import iso
from models.tables import EVENTS_TRIGGER, Connector, EventCursor, Grant, Resource, SyncPart, SyncRun


class UnknownConnector(LookupError):
    pass


def synced_connector_names(session: Session) -> list[str]:
    return list(session.execute(select(Connector.name).order_by(Connector.name)).scalars())


def connector_id(session: Session, name: str) -> int:
    """The connector's row id; its name is lowercase, so ``ACME`` finds ``acme``. UnknownConnector names the
    closest known ones."""
    found = session.execute(select(Connector.id).where(Connector.name.in_({name, name.lower()}))).scalar_one_or_none()
    if found is None:
        from models.resolver import suggest

        known = synced_connector_names(session)
        raise UnknownConnector(f"connector {name!r} has never been synced (no rows in the database)"
                               + suggest(name, known))
    return found


def resources(engine: Engine, connector: str, resource_type: str | None = None,
              include_deleted: bool = True) -> list[dict[str, Any]]:
    with Session(engine) as session:
        cid = connector_id(session, connector)
        query = select(Resource).where(Resource.connector_id == cid)
        if resource_type:
            query = query.where(Resource.type == resource_type)
        if not include_deleted:
            query = query.where(Resource.deleted_at.is_(None))
        rows = session.execute(query.order_by(Resource.type, Resource.external_id)).scalars()
        out = []
        for row in rows:
            item: dict[str, Any] = {"type": row.type, "id": row.external_id, "name": row.name}
            if row.type in ("user", "admin"):
                item["email"] = row.email
                item["status"] = row.status
            if row.type == "admin":
                item["linked_user_id"] = row.linked_user_id
            if row.type == "app":
                item["status"] = row.status
            item["deleted"] = row.deleted_at is not None
            item["deleted_at"] = iso(row.deleted_at)
            item["first_seen_at"] = iso(row.first_seen_at)
            item["updated_at"] = iso(row.updated_at)
            item["profile"] = row.profile
            out.append(item)
        return out


def grants(engine: Engine, connector: str, include_deleted: bool = True) -> list[dict[str, Any]]:
    with Session(engine) as session:
        cid = connector_id(session, connector)
        query = select(Grant).where(Grant.connector_id == cid)
        if not include_deleted:
            query = query.where(Grant.deleted_at.is_(None))
        rows = session.execute(query.order_by(Grant.resource_type, Grant.resource_id, Grant.principal_id,
                                              Grant.via)).scalars()
        return [{
            "resource_type": g.resource_type, "resource_id": g.resource_id, "entitlement": g.entitlement,
            "principal_type": g.principal_type, "principal_id": g.principal_id, "via": g.via or None,
            "deleted": g.deleted_at is not None, "deleted_at": iso(g.deleted_at),
            "first_seen_at": iso(g.first_seen_at),
        } for g in rows]


def run_record(session: Session, run: SyncRun) -> dict[str, Any]:
    parts = session.execute(select(SyncPart).where(SyncPart.run_id == run.id).order_by(SyncPart.id)).scalars()
    return {
        "id": run.id, "status": run.status, "trigger": run.trigger, "task_id": run.task_id,
        "started_at": iso(run.started_at), "finished_at": iso(run.finished_at), "error": run.error,
        "parts": [{"name": p.name, "phase": p.phase, "status": p.status, "attempt": p.attempt,
                   "requests": p.requests, "counts": p.counts, "error": p.error,
                   "started_at": iso(p.started_at), "finished_at": iso(p.finished_at)} for p in parts],
    }


def incremental_record(cursor: EventCursor | None) -> dict[str, Any] | None:
    """The last incremental refresh of a connector (``status``'s ``incremental``; docs/cli-json.md)."""
    if cursor is None:
        return None
    lag = None
    if cursor.cursor is not None:
        lag = round((datetime.now(timezone.utc) - cursor.cursor).total_seconds(), 1)
    return {"refreshed_at": iso(cursor.refreshed_at), "outcome": cursor.outcome, "reason": cursor.reason,
            "cursor": iso(cursor.cursor), "cursor_age_seconds": lag, "run_id": cursor.run_id,
            "requests": cursor.requests, "events": cursor.events, "reads": cursor.reads,
            "lag_seconds": cursor.lag_seconds, "full_sync_asked_at": iso(cursor.full_sync_asked_at)}


def wait_for_refresh(engine: Engine, connector: str, since: datetime, timeout: float,
                     poll: float = 0.2) -> dict[str, Any] | None:
    """Poll until the connector's incremental refresh has ended after ``since``; its record, or None on timeout."""
    def ended() -> dict[str, Any] | None:
        with Session(engine) as session:
            cid = session.execute(select(Connector.id).where(Connector.name == connector)).scalar_one_or_none()
            cursor = session.get(EventCursor, cid) if cid is not None else None
            if cursor is not None and cursor.refreshed_at is not None and cursor.refreshed_at >= since:
                return incremental_record(cursor)
            return None

    return poll_until(ended, timeout, poll)


def poll_until(read: Callable[[], dict[str, Any] | None], timeout: float, poll: float) -> dict[str, Any] | None:
    """``read()`` every ``poll`` seconds until it gives something; None after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def run_by_task_id(engine: Engine, task_id: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        run = session.execute(select(SyncRun).where(SyncRun.task_id == task_id).order_by(SyncRun.id)).scalars().first()
        return run_record(session, run) if run else None


def wait_for_run(engine: Engine, task_id: str, timeout: float, poll: float = 0.2) -> dict[str, Any] | None:
    """Poll until the run opened by trigger task ``task_id`` has ended (or was skipped); None on timeout."""
    def ended() -> dict[str, Any] | None:
        run = run_by_task_id(engine, task_id)
        return run if run is not None and run["finished_at"] is not None else None

    return poll_until(ended, timeout, poll)


#: A full sync run, not an incremental refresh (``jumpsync status`` shows those apart, from ``event_cursors``).
_FULL_RUN = SyncRun.trigger != EVENTS_TRIGGER


def latest_run(engine: Engine, connector: str, *, finished: bool = False) -> dict[str, Any] | None:
    """The connector's latest full sync run (incremental runs aside)."""
    with Session(engine) as session:
        cid = connector_id(session, connector)
        query = select(SyncRun).where(SyncRun.connector_id == cid, SyncRun.status != "skipped", _FULL_RUN)
        if finished:
            query = query.where(SyncRun.finished_at.is_not(None))
        run = session.execute(query.order_by(SyncRun.id.desc()).limit(1)).scalars().first()
        return run_record(session, run) if run else None


def status(engine: Engine, configured: list[str]) -> list[dict[str, Any]]:
    """One entry per connector, configured or seen in the database."""
    with Session(engine) as session:
        from models.tables import ProvisioningRequest

        known = {name: cid for cid, name in session.execute(select(Connector.id, Connector.name))}
        provisioning: dict[str, dict[str, int]] = {}
        for name, state, count in session.execute(
                select(ProvisioningRequest.connector, ProvisioningRequest.status, func.count())
                .where(ProvisioningRequest.status.in_(("pending", "running", "failed")))
                .group_by(ProvisioningRequest.connector, ProvisioningRequest.status)):
            provisioning.setdefault(name, {})[state] = count
        out = []
        for name in sorted(set(configured) | set(known)):
            entry: dict[str, Any] = {"connector": name, "configured": name in configured,
                                     "last_run": None, "last_success_at": None, "resources": {}, "grants": 0,
                                     "provisioning": provisioning.get(name, {})}
            cid = known.get(name)
            if cid is not None:
                last = session.execute(select(SyncRun).where(SyncRun.connector_id == cid,
                                                             SyncRun.status != "skipped", _FULL_RUN)
                                       .order_by(SyncRun.id.desc()).limit(1)).scalars().first()
                entry["last_run"] = run_record(session, last) if last else None
                success = session.execute(select(func.max(SyncRun.finished_at)).where(
                    SyncRun.connector_id == cid, SyncRun.status == "succeeded", _FULL_RUN)).scalar_one_or_none()
                entry["last_success_at"] = iso(success)
                entry["incremental"] = incremental_record(session.get(EventCursor, cid))
                entry["resources"] = dict(session.execute(
                    select(Resource.type, func.count()).where(Resource.connector_id == cid,
                                                              Resource.deleted_at.is_(None))
                    .group_by(Resource.type)).all())
                entry["grants"] = session.execute(select(func.count()).select_from(Grant).where(
                    Grant.connector_id == cid, Grant.deleted_at.is_(None))).scalar_one()
            out.append(entry)
        return out


def metrics_snapshot(engine: Engine) -> dict[str, Any]:
    """What the metrics exporter reports from the database (see telemetry.metrics.DatabaseCollector)."""
    from models.tables import ProvisioningRequest

    with Session(engine) as session:
        names = dict(session.execute(select(Connector.id, Connector.name)).all())
        resources = {(names[cid], rtype): count for cid, rtype, count in session.execute(
            select(Resource.connector_id, Resource.type, func.count()).where(Resource.deleted_at.is_(None))
            .group_by(Resource.connector_id, Resource.type))}
        grants = {(names[cid], rtype): count for cid, rtype, count in session.execute(
            select(Grant.connector_id, Grant.resource_type, func.count()).where(Grant.deleted_at.is_(None))
            .group_by(Grant.connector_id, Grant.resource_type))}
        last_success = {}
        for cid, finished in session.execute(select(SyncRun.connector_id, func.max(SyncRun.finished_at))
                                             .where(SyncRun.status == "succeeded", _FULL_RUN)
                                             .group_by(SyncRun.connector_id)):
            if finished is not None:
                last_success[names[cid]] = finished.timestamp()
        oldest = session.execute(select(func.min(ProvisioningRequest.created_at))
                                 .where(ProvisioningRequest.status == "pending")).scalar_one_or_none()
        msp = msp_snapshot(session)
    age = (datetime.now(timezone.utc) - oldest).total_seconds() if oldest is not None else 0.0
    return {"resources": resources, "grants": grants, "last_success": last_success,
            "oldest_pending_seconds": max(age, 0.0), **msp}


def msp_snapshot(session: Session) -> dict[str, Any]:
    """Per MSP key: its organisations by state (``listed``, ``missing``, ``removed``; include/exclude aside) and
    its last listing (outcome, when)."""
    from models.tables import MspListing, MspOrganization

    state = case((MspOrganization.removed_at.is_not(None), "removed"),
                 (MspOrganization.missing_since.is_not(None), "missing"), else_="listed")
    organizations = {(msp, label): count for msp, label, count in session.execute(
        select(MspOrganization.msp, state, func.count()).group_by(MspOrganization.msp, state))}
    listings = {row.msp: (row.outcome == "ok", row.listed_at.timestamp())
                for row in session.execute(select(MspListing)).scalars()}
    return {"msp_organizations": organizations, "msp_listings": listings}




def held_parts(engine: Engine) -> list[dict[str, Any]]:
    """Parts held by the deletion safety valve, in the latest finished run of each connector."""
    with Session(engine) as session:
        latest = (select(SyncRun.connector_id, func.max(SyncRun.id).label("run_id"))
                  .where(SyncRun.status != "skipped", SyncRun.finished_at.is_not(None), _FULL_RUN)
                  .group_by(SyncRun.connector_id).subquery())
        rows = session.execute(select(Connector.name, SyncPart.run_id, SyncPart.name, SyncPart.finished_at,
                                      SyncPart.error)
                               .join(latest, latest.c.run_id == SyncPart.run_id)
                               .join(Connector, Connector.id == latest.c.connector_id)
                               .where(SyncPart.status == "held").order_by(Connector.name, SyncPart.name)).all()
        return [{"connector": name, "run_id": run_id, "part": part, "finished_at": iso(finished), "error": error}
                for name, run_id, part, finished, error in rows]
