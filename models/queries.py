"""Read-side queries behind the CLI and the metrics exporter. They return the typed records of
``models.read_records``, whose ``to_json()`` is the CLI's documented JSON (docs/cli-json.md)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TypeVar

from sqlalchemy import ColumnElement, Engine, Row, ScalarSelect, case, func, select
from sqlmodel import Session, col

from config.names import match_name, suggest
from models.dataversion import latest_run_ids
from models.read_records import (
    ConnectorStatus,
    HeldPart,
    MetricsSnapshot,
    MspSnapshot,
    PartRecord,
    RefreshRecord,
    RunRecord,
    StoredGrant,
    StoredResource,
)
from models.states import ListingOutcome, PartPhase, PartStatus, RefreshOutcome, RequestStatus, RunStatus, Trigger
from models.tables import (
    Connector,
    EventCursor,
    Grant,
    MspListing,
    MspOrganization,
    ProvisioningRequest,
    Resource,
    SyncPart,
    SyncRun,
    table_of,
)

T = TypeVar("T")


class UnknownConnector(LookupError):
    pass


def synced_connector_names(session: Session) -> list[str]:
    return list(session.execute(select(col(Connector.name)).order_by(col(Connector.name))).scalars())


def connector_id(session: Session, name: str) -> int:
    """The row id of the synced connector that ``name`` names (``config.names.match_name``: ``ACME`` is ``acme``);
    UnknownConnector names the closest synced ones."""
    known = {name: cid for name, cid in session.execute(select(col(Connector.name), col(Connector.id)))}
    found = match_name(name, known)
    if found is None:
        raise UnknownConnector(f"connector {name!r} has never been synced (no rows in the database)"
                               + suggest(name, sorted(known)))
    return known[found]


def resources(engine: Engine, connector: str, resource_type: str | None = None,
              include_deleted: bool = True) -> list[StoredResource]:
    with Session(engine) as session:
        cid = connector_id(session, connector)
        query = select(Resource).where(col(Resource.connector_id) == cid)
        if resource_type:
            query = query.where(col(Resource.type) == resource_type)
        if not include_deleted:
            query = query.where(col(Resource.deleted_at).is_(None))
        rows = session.execute(query.order_by(col(Resource.type), col(Resource.external_id))).scalars()
        return [StoredResource(type=row.type, id=row.external_id, name=row.name, email=row.email, status=row.status,
                               linked_user_id=row.linked_user_id, deleted_at=row.deleted_at,
                               first_seen_at=row.first_seen_at, updated_at=row.updated_at, profile=row.profile)
                for row in rows]


def resource_name(connector: ColumnElement[int], kind: ColumnElement[str] | str,
                  rid: ColumnElement[str]) -> ScalarSelect[str]:
    """The stored name of the resource a row refers to by type and id (NULL when there is none): the one way
    the grants and the change history put names beside their ids. A correlated lookup on the resources' unique
    key, so it costs an index probe per row and reads the name whether the resource is live or deleted."""
    table = table_of(Resource)
    return (select(table.c.name).where(table.c.connector_id == connector, table.c.type == kind,
                                       table.c.external_id == rid).scalar_subquery())


def grants(engine: Engine, connector: str, include_deleted: bool = True) -> list[StoredGrant]:
    table = table_of(Grant)
    with Session(engine) as session:
        cid = connector_id(session, connector)
        query = select(table.c.resource_type, table.c.resource_id, table.c.entitlement, table.c.principal_type,
                       table.c.principal_id, table.c.via, table.c.deleted_at, table.c.first_seen_at,
                       resource_name(table.c.connector_id, table.c.resource_type, table.c.resource_id),
                       resource_name(table.c.connector_id, table.c.principal_type, table.c.principal_id),
                       resource_name(table.c.connector_id, "group", table.c.via)).where(table.c.connector_id == cid)
        if not include_deleted:
            query = query.where(table.c.deleted_at.is_(None))
        rows = session.execute(query.order_by(table.c.resource_type, table.c.resource_id, table.c.principal_id,
                                              table.c.via))
        return [StoredGrant(resource_type=rtype, resource_id=rid, entitlement=entitlement, principal_type=ptype,
                            principal_id=pid, via=via or None, deleted_at=deleted_at, first_seen_at=first_seen_at,
                            resource_name=rname, principal_name=pname, via_name=vname if via else None)
                for (rtype, rid, entitlement, ptype, pid, via, deleted_at, first_seen_at, rname, pname, vname)
                in rows]


def run_record(session: Session, run: SyncRun) -> RunRecord:
    parts = session.execute(select(*_PART_FIELDS).where(col(SyncPart.run_id) == run.id).order_by(col(SyncPart.id)))
    return _run_record(run, parts)


#: What a run's record shows of each part: read as columns, not as ``SyncPart`` objects (``status`` reads the
#: last run of every connector: building objects, and decoding checkpoints it does not show, cost more than the
#: query).
_PART_FIELDS = (col(SyncPart.run_id), col(SyncPart.name), col(SyncPart.phase), col(SyncPart.status),
                col(SyncPart.attempt), col(SyncPart.requests), col(SyncPart.counts), col(SyncPart.error),
                col(SyncPart.started_at), col(SyncPart.finished_at))


def _run_record(run: SyncRun, parts: Iterable[Row]) -> RunRecord:
    """A run and its parts (rows of ``_PART_FIELDS``, in their ``id`` order) as a record."""
    assert run.id is not None  # a stored run
    return RunRecord(
        id=run.id, status=RunStatus(run.status), trigger=Trigger(run.trigger), task_id=run.task_id,
        started_at=run.started_at, finished_at=run.finished_at, error=run.error,
        parts=tuple(PartRecord(name=p.name, phase=PartPhase(p.phase), status=PartStatus(p.status),
                               attempt=p.attempt, requests=p.requests, counts=p.counts, error=p.error,
                               started_at=p.started_at, finished_at=p.finished_at) for p in parts))


def incremental_record(cursor: EventCursor | None) -> RefreshRecord | None:
    """The last incremental refresh of a connector (``status``'s ``incremental``; docs/cli-json.md)."""
    if cursor is None:
        return None
    lag = None
    if cursor.cursor is not None:
        lag = round((datetime.now(timezone.utc) - cursor.cursor).total_seconds(), 1)
    return RefreshRecord(refreshed_at=cursor.refreshed_at,
                         outcome=RefreshOutcome(cursor.outcome) if cursor.outcome is not None else None,
                         reason=cursor.reason, cursor=cursor.cursor, cursor_age_seconds=lag, run_id=cursor.run_id,
                         requests=cursor.requests, events=cursor.events, reads=cursor.reads,
                         lag_seconds=cursor.lag_seconds, full_sync_asked_at=cursor.full_sync_asked_at)


def refresh_since(engine: Engine, connector: str, since: datetime) -> RefreshRecord | None:
    """The connector's incremental refresh if one ended at ``since`` or later (what ``sync --events --wait``
    waits for)."""
    with Session(engine) as session:
        cid = session.execute(select(col(Connector.id)).where(col(Connector.name) == connector)).scalar_one_or_none()
        cursor = session.get(EventCursor, cid) if cid is not None else None
        if cursor is not None and cursor.refreshed_at is not None and cursor.refreshed_at >= since:
            return incremental_record(cursor)
        return None


def poll_until(read: Callable[[], T | None], timeout: float, poll: float) -> T | None:
    """``read()`` every ``poll`` seconds until it gives something; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def run_by_task_id(engine: Engine, task_id: str) -> RunRecord | None:
    with Session(engine) as session:
        run = session.execute(select(SyncRun).where(col(SyncRun.task_id) == task_id).order_by(col(SyncRun.id))
                              ).scalars().first()
        return run_record(session, run) if run else None


def ended_run(engine: Engine, task_id: str) -> RunRecord | None:
    """The run opened by trigger task ``task_id`` once it has ended (or was skipped); None before."""
    run = run_by_task_id(engine, task_id)
    return run if run is not None and run.finished_at is not None else None


def wait_for_run(engine: Engine, task_id: str, timeout: float, poll: float = 0.2) -> RunRecord | None:
    """Poll until the run opened by trigger task ``task_id`` has ended (or was skipped); None on timeout."""
    return poll_until(lambda: ended_run(engine, task_id), timeout, poll)


#: A full sync run, not an incremental refresh (``jumpsync status`` shows those apart, from ``event_cursors``).
_FULL_RUN = col(SyncRun.trigger) != Trigger.EVENTS
_NOT_SKIPPED = col(SyncRun.status) != RunStatus.SKIPPED


def last_full_run(session: Session, cid: int, *, finished: bool = False) -> SyncRun | None:
    """A connector's latest full sync run, skips and incremental runs aside (``status``'s ``last_run``)."""
    query = select(SyncRun).where(col(SyncRun.connector_id) == cid, _NOT_SKIPPED, _FULL_RUN)
    if finished:
        query = query.where(col(SyncRun.finished_at).is_not(None))
    return session.execute(query.order_by(col(SyncRun.id).desc()).limit(1)).scalars().first()


#: The request statuses ``jumpsync status`` counts per connector.
_COUNTED_REQUESTS = (RequestStatus.AWAITING_APPROVAL, RequestStatus.PENDING, RequestStatus.RUNNING, RequestStatus.FAILED)


def status(engine: Engine, configured: list[str]) -> list[ConnectorStatus]:
    """One entry per connector, configured or seen in the database. A fixed number of queries, each over every
    connector at once: an MSP key's thousand organisations cost what ten do, but for the rows."""
    with Session(engine) as session:
        known = {name: cid for cid, name in session.execute(select(col(Connector.id), col(Connector.name)))}
        provisioning: dict[str, dict[RequestStatus, int]] = {}
        for name, state, count in session.execute(
                select(col(ProvisioningRequest.connector), col(ProvisioningRequest.status), func.count())
                .where(col(ProvisioningRequest.status).in_(_COUNTED_REQUESTS))
                .group_by(col(ProvisioningRequest.connector), col(ProvisioningRequest.status))):
            provisioning.setdefault(name, {})[RequestStatus(state)] = count
        last_ids = latest_run_ids()
        last_runs = {run.connector_id: run for run in
                     session.execute(select(SyncRun).where(col(SyncRun.id).in_(last_ids))).scalars()}
        parts: dict[int, list[Row]] = defaultdict(list)
        for part in session.execute(select(*_PART_FIELDS).where(col(SyncPart.run_id).in_(last_ids))
                                    .order_by(col(SyncPart.id))):
            parts[part.run_id].append(part)
        successes = dict(session.execute(
            select(col(SyncRun.connector_id), func.max(col(SyncRun.finished_at)))
            .where(col(SyncRun.status) == RunStatus.SUCCEEDED, _FULL_RUN).group_by(col(SyncRun.connector_id))).all())
        live_resources: dict[int, dict[str, int]] = defaultdict(dict)
        for cid, rtype, count in session.execute(
                select(col(Resource.connector_id), col(Resource.type), func.count())
                .where(col(Resource.deleted_at).is_(None)).group_by(col(Resource.connector_id), col(Resource.type))):
            live_resources[cid][rtype] = count
        live_grants = dict(session.execute(
            select(col(Grant.connector_id), func.count()).where(col(Grant.deleted_at).is_(None))
            .group_by(col(Grant.connector_id))).all())
        cursors = {cursor.connector_id: cursor for cursor in session.execute(select(EventCursor)).scalars()}
        out = []
        for name in sorted(set(configured) | set(known)):
            cid = known.get(name)
            requests = provisioning.get(name, {})
            if cid is None:
                out.append(ConnectorStatus(connector=name, configured=name in configured, provisioning=requests))
                continue
            last = last_runs.get(cid)
            out.append(ConnectorStatus(
                connector=name, configured=name in configured, synced=True,
                last_run=_run_record(last, parts[last.id]) if last and last.id is not None else None,
                last_success_at=successes.get(cid),
                resources=live_resources.get(cid, {}), grants=live_grants.get(cid, 0),
                provisioning=requests, incremental=incremental_record(cursors.get(cid))))
        return out


def metrics_snapshot(engine: Engine) -> MetricsSnapshot:
    """What the metrics exporter reports from the database (see telemetry.metrics.DatabaseCollector)."""
    with Session(engine) as session:
        names: dict[int | None, str] = {cid: name for cid, name in session.execute(
            select(col(Connector.id), col(Connector.name)))}
        resources = {(names[cid], rtype): count for cid, rtype, count in session.execute(
            select(col(Resource.connector_id), col(Resource.type), func.count())
            .where(col(Resource.deleted_at).is_(None))
            .group_by(col(Resource.connector_id), col(Resource.type)))}
        grants = {(names[cid], rtype): count for cid, rtype, count in session.execute(
            select(col(Grant.connector_id), col(Grant.resource_type), func.count())
            .where(col(Grant.deleted_at).is_(None))
            .group_by(col(Grant.connector_id), col(Grant.resource_type)))}
        last_success = {}
        for cid, finished in session.execute(select(col(SyncRun.connector_id), func.max(col(SyncRun.finished_at)))
                                             .where(col(SyncRun.status) == RunStatus.SUCCEEDED, _FULL_RUN)
                                             .group_by(col(SyncRun.connector_id))):
            if finished is not None:
                last_success[names[cid]] = finished.timestamp()
        oldest = _oldest_request(session, RequestStatus.PENDING)
        awaiting = _oldest_request(session, RequestStatus.AWAITING_APPROVAL)
        msp = msp_snapshot(session)
    return MetricsSnapshot(resources=resources, grants=grants, last_success=last_success,
                           oldest_pending_seconds=_age(oldest), msp=msp,
                           oldest_awaiting_approval_seconds=_age(awaiting))


def _oldest_request(session: Session, state: RequestStatus) -> datetime | None:
    """When the oldest request in ``state`` was accepted (the status index has it)."""
    return session.execute(select(func.min(col(ProvisioningRequest.created_at)))
                           .where(col(ProvisioningRequest.status) == state)).scalar_one_or_none()


def _age(since: datetime | None) -> float:
    """Seconds since ``since``; 0 for none."""
    return max((datetime.now(timezone.utc) - since).total_seconds(), 0.0) if since is not None else 0.0


def msp_snapshot(session: Session) -> MspSnapshot:
    """Per MSP key: its organisations by state (``listed``, ``missing``, ``removed``; include/exclude aside) and
    its last listing (outcome, when)."""
    state = case((col(MspOrganization.removed_at).is_not(None), "removed"),
                 (col(MspOrganization.missing_since).is_not(None), "missing"), else_="listed")
    organizations = {(msp, label): count for msp, label, count in session.execute(
        select(col(MspOrganization.msp), state, func.count()).group_by(col(MspOrganization.msp), state))}
    listings = {row.msp: (row.outcome == ListingOutcome.OK, row.listed_at.timestamp())
                for row in session.execute(select(MspListing)).scalars()}
    return MspSnapshot(organizations=organizations, listings=listings)


def held_parts(engine: Engine) -> list[HeldPart]:
    """Parts held by the deletion safety valve, in the latest finished run of each connector."""
    with Session(engine) as session:
        latest = (select(col(SyncRun.connector_id), func.max(col(SyncRun.id)).label("run_id"))
                  .where(_NOT_SKIPPED, col(SyncRun.finished_at).is_not(None), _FULL_RUN)
                  .group_by(col(SyncRun.connector_id)).subquery())
        rows = session.execute(select(col(Connector.name), col(SyncPart.run_id), col(SyncPart.name),
                                      col(SyncPart.finished_at), col(SyncPart.error))
                               .join(latest, latest.c.run_id == col(SyncPart.run_id))
                               .join(Connector, col(Connector.id) == latest.c.connector_id)
                               .where(col(SyncPart.status) == PartStatus.HELD)
                               .order_by(col(Connector.name), col(SyncPart.name))).all()
        return [HeldPart(connector=name, run_id=run_id, part=part, finished_at=finished, error=error)
                for name, run_id, part, finished, error in rows]
