"""Opening a sync run: one active run per connector, a skip recorded when it is busy, a redelivered trigger
that finds its run, and the stale runs of dead workers failed so that they block nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from config.settings import ConnectorConfig
from models.connectors import register_connector
from models.states import USABLE_PART_STATUSES
from models.tables import ACTIVE_RUN_STATUSES, EVENTS_TRIGGER, SyncPart, SyncRun, utcnow
from pipeline.events_runs import EVENTS_RUN_STALE_AFTER
from pipeline.plan import plan_parts
from telemetry import metrics

@dataclass(frozen=True)
class StartResult:
    run_id: int
    skipped: bool
    parts: tuple[str, ...] = ()
    reason: str | None = None
    #: The active run is an incremental refresh (seconds long): try again shortly instead of skipping.
    retry: bool = False


#: The predicate of the partial index ``uq_sync_runs_one_active`` as a literal: SQLite uses a partial index only
#: for a query that states its predicate (bound parameters do not), and incremental runs add a row a minute.
ACTIVE_RUN_PREDICATE = text("sync_runs.status IN ('running', 'finalizing')")


def reap_stale_runs(session: Session, connector_id: int | None, stale_after: timedelta, now: datetime) -> int:
    """Fail active runs older than ``stale_after`` (of one connector, or all): their worker died, and they must
    not block new runs."""
    query = select(SyncRun.id, SyncRun.trigger).where(ACTIVE_RUN_PREDICATE, or_(
        SyncRun.started_at < now - stale_after,
        and_(SyncRun.trigger == EVENTS_TRIGGER, SyncRun.started_at < now - EVENTS_RUN_STALE_AFTER)))
    if connector_id is not None:
        query = query.where(SyncRun.connector_id == connector_id)
    stale = session.execute(query).all()
    for run_id, trigger in stale:
        session.execute(update(SyncPart).where(
            SyncPart.run_id == run_id, SyncPart.status.in_(("pending", "running"))).values(
            status="failed", finished_at=now, error="abandoned: the run went stale"))
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(
            status="failed", finished_at=now,
            error=f"abandoned: still active after {EVENTS_RUN_STALE_AFTER if trigger == EVENTS_TRIGGER else stale_after}; "
                  "its worker probably died"))
    session.commit()
    return len(stale)


def _redelivered(session: Session, task_id: str) -> StartResult | None:
    """The run this trigger message already opened, if it is delivered again (its worker died after opening
    the run): the fetch parts still pending are sent again, and no second run is opened."""
    run = session.execute(select(SyncRun).where(SyncRun.task_id == task_id).order_by(SyncRun.id)).scalars().first()
    if run is None:
        return None
    pending = ()
    if run.status == "running":
        pending = tuple(session.execute(select(SyncPart.name).where(
            SyncPart.run_id == run.id, SyncPart.phase == "fetch", SyncPart.status == "pending")).scalars())
    return StartResult(run_id=run.id, skipped=run.status == "skipped", parts=pending, reason=run.error)


def start_run(engine: Engine, connector: ConnectorConfig, *, trigger: str, task_id: str | None,
              stale_after: timedelta, wait_for_refresh: bool = True) -> StartResult:
    """Open a run with its parts pending, or record a skip when the connector already has an active run; with
    ``wait_for_refresh``, an active incremental run gives ``retry`` instead (the caller tries again shortly)."""
    now = utcnow()
    plan = plan_parts(connector)
    with Session(engine) as session:
        connector_id = register_connector(session, connector)
        if task_id is not None:
            again = _redelivered(session, task_id)
            if again is not None:
                return again
        reap_stale_runs(session, connector_id, stale_after, now)
        run = SyncRun(connector_id=connector_id, status="running", trigger=trigger, task_id=task_id, started_at=now)
        session.add(run)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            active = session.execute(select(SyncRun.id, SyncRun.trigger).where(
                SyncRun.connector_id == connector_id, SyncRun.status.in_(ACTIVE_RUN_STATUSES))).first()
            reason = f"run {active.id if active else None} of connector {connector.name!r} is still active"
            if wait_for_refresh and active is not None and active.trigger == EVENTS_TRIGGER:
                return StartResult(run_id=active.id, skipped=True, reason=reason, retry=True)
            skipped = SyncRun(connector_id=connector_id, status="skipped", trigger=trigger, task_id=task_id,
                              started_at=now, finished_at=now, error=reason)
            session.add(skipped)
            session.commit()
            metrics.observe_run(connector.name, "skipped", None)
            return StartResult(run_id=skipped.id, skipped=True, reason=reason)
        for name in plan.fetch:
            session.add(SyncPart(run_id=run.id, name=name, phase="fetch"))
        for name in plan.derive:
            session.add(SyncPart(run_id=run.id, name=name, phase="derive"))
        session.commit()
        return StartResult(run_id=run.id, skipped=False, parts=plan.fetch)


def active_run(engine: Engine, connector_id: int) -> tuple[int, str] | None:
    """(id, trigger) of the connector's active run, if it has one."""
    with Session(engine) as session:
        row = session.execute(select(SyncRun.id, SyncRun.trigger).where(
            SyncRun.connector_id == connector_id, ACTIVE_RUN_PREDICATE)).first()
        return (row.id, row.trigger) if row else None


@dataclass(frozen=True)
class FullSync:
    run_id: int
    started_at: datetime
    requests: int  # what the run cost: the yardstick of an incremental refresh


def last_complete_sync(engine: Engine, connector_id: int) -> FullSync | None:
    """The connector's latest ended full sync whose fetch parts all read their whole listing (succeeded, or held
    their deletions), if any: every change before its start is in the database but for held deletions, which
    the events do not bring either."""
    incomplete = select(SyncPart.id).where(SyncPart.run_id == SyncRun.id, SyncPart.phase == "fetch",
                                           SyncPart.status.not_in(USABLE_PART_STATUSES)).exists()
    with Session(engine) as session:
        row = session.execute(select(SyncRun.id, SyncRun.started_at).where(
            SyncRun.connector_id == connector_id, SyncRun.status.in_(("succeeded", "partial")),
            SyncRun.trigger != EVENTS_TRIGGER, ~incomplete).order_by(SyncRun.id.desc()).limit(1)).first()
        if row is None:
            return None
        requests = session.execute(select(func.coalesce(func.sum(SyncPart.requests), 0)).where(
            SyncPart.run_id == row.id)).scalar_one()
        return FullSync(row.id, row.started_at, int(requests))
