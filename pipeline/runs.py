"""Opening a sync run: one active run per connector, a skip recorded when it is busy, a redelivered trigger
that finds its run, and the stale runs of dead workers failed so that they block nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, and_, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from config.settings import ConnectorConfig
from models.connectors import register_connector
from models.states import (
    ACTIVE_RUN_STATUSES,
    PARTS,
    RUNS,
    USABLE_PART_STATUSES,
    PartPhase,
    PartStatus,
    RunStatus,
    Trigger,
)
from models.tables import Connector, SyncPart, SyncRun, active_run_predicate, utcnow
from pipeline.events_runs import EVENTS_RUN_STALE_AFTER
from pipeline.plan import plan_parts
from telemetry import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    run_id: int
    skipped: bool
    parts: tuple[str, ...] = ()
    reason: str | None = None
    #: The active run is an incremental refresh (seconds long): try again shortly instead of skipping.
    retry: bool = False


#: A run holding its connector's active slot, in the words of the partial index (incremental runs add a row a
#: minute: the index keeps finding the active run cheap).
ACTIVE_RUN_PREDICATE = text(active_run_predicate("sync_runs.status"))
#: A stale run's parts that had not ended.
_OPEN_PART_STATUSES = (PartStatus.PENDING, PartStatus.RUNNING)


def reap_stale_runs(session: Session, connector_id: int | None, stale_after: timedelta, now: datetime) -> int:
    """Fail active runs older than ``stale_after`` (of one connector, or all): their worker died, and they must
    not block new runs."""
    query = select(col(SyncRun.id), col(SyncRun.trigger)).where(ACTIVE_RUN_PREDICATE, or_(
        col(SyncRun.started_at) < now - stale_after,
        and_(col(SyncRun.trigger) == Trigger.EVENTS, col(SyncRun.started_at) < now - EVENTS_RUN_STALE_AFTER)))
    if connector_id is not None:
        query = query.where(col(SyncRun.connector_id) == connector_id)
    stale = session.execute(query).all()
    for run_id, trigger in stale:
        limit = EVENTS_RUN_STALE_AFTER if trigger == Trigger.EVENTS else stale_after
        _abandon(session, run_id, now, part_error="abandoned: the run went stale",
                 run_error=f"abandoned: still active after {limit}; its worker probably died")
    session.commit()
    return len(stale)


def _abandon(session: Session, run_id: int, now: datetime, *, part_error: str, run_error: str) -> bool:
    """Fail an active run and its parts that had not ended; False when the run had ended meanwhile."""
    failed_part = PARTS.move(_OPEN_PART_STATUSES, PartStatus.FAILED)
    failed_run = RUNS.move(ACTIVE_RUN_STATUSES, RunStatus.FAILED)
    ended = cast(CursorResult[Any], session.execute(update(SyncRun).where(
        col(SyncRun.id) == run_id, col(SyncRun.status).in_(ACTIVE_RUN_STATUSES)).values(
        status=failed_run, finished_at=now, error=run_error)))
    if ended.rowcount != 1:
        return False
    session.execute(update(SyncPart).where(
        col(SyncPart.run_id) == run_id, col(SyncPart.status).in_(_OPEN_PART_STATUSES)).values(
        status=failed_part, finished_at=now, error=part_error))
    return True


@dataclass(frozen=True)
class AbandonedRun:
    """A run failed because none of its messages could still exist."""

    run_id: int
    connector: str
    #: What it was when abandoned: ``running`` or ``finalizing``.
    status: RunStatus


def abandon_orphaned_runs(engine: Engine, connector_names: Collection[str], *, reason: str) -> list[AbandonedRun]:
    """Fail the active runs of these connectors, whatever their age: the caller knows that no message of theirs
    can exist any more (``jumpsync up`` starting a fresh private broker, so every message sent through the last
    one died with it), so nothing would ever move them on and each would block its connector until
    ``stale_run_after``. ``reason`` ends up in the run's error, after ``abandoned:``."""
    if not connector_names:
        return []
    now = utcnow()
    abandoned = []
    with Session(engine) as session:
        rows = session.execute(select(col(SyncRun.id), col(Connector.name), col(SyncRun.status))
                               .join(Connector, col(Connector.id) == SyncRun.connector_id)
                               .where(ACTIVE_RUN_PREDICATE, col(Connector.name).in_(list(connector_names)))
                               .order_by(col(SyncRun.id))).all()
        for run_id, connector, status in rows:
            if _abandon(session, run_id, now, part_error=f"abandoned: {reason}", run_error=f"abandoned: {reason}"):
                abandoned.append(AbandonedRun(run_id, connector, RunStatus(status)))
        session.commit()
    return abandoned


class RunNotActive(ValueError):
    """A run to cancel that does not exist, or has ended."""


def cancel_run(engine: Engine, run_id: int, *, cancelled_by: str, reason: str | None = None) -> AbandonedRun:
    """An operator's way out: fail an active run and its parts that had not ended, now, recording who
    (``cli:<login>``) and why; its connector may sync again at once. A part still running somewhere records
    nothing when it ends (its end needs it running). ``RunNotActive`` names a run that is not active."""
    error = f"cancelled by {cancelled_by}" + (f": {reason}" if reason else "")
    with Session(engine) as session:
        row = session.execute(select(col(Connector.name), col(SyncRun.status))
                              .join(Connector, col(Connector.id) == SyncRun.connector_id)
                              .where(col(SyncRun.id) == run_id)).first()
        if row is None:
            raise RunNotActive(f"no run {run_id}")
        connector, status = row
        if not _abandon(session, run_id, utcnow(), part_error=error, run_error=error):
            raise RunNotActive(f"run {run_id} of {connector} has already ended ({status})")
        session.commit()
    log.warning("sync run cancelled", extra={"run_id": run_id, "connector": connector, "cancelled_by": cancelled_by})
    return AbandonedRun(run_id, connector, RunStatus(status))


def _redelivered(session: Session, task_id: str) -> StartResult | None:
    """The run this trigger message already opened, if it is delivered again (its worker died after opening
    the run): the fetch parts still pending are sent again, and no second run is opened."""
    run = session.execute(select(SyncRun).where(col(SyncRun.task_id) == task_id).order_by(col(SyncRun.id))
                          ).scalars().first()
    if run is None or run.id is None:
        return None
    pending: tuple[str, ...] = ()
    if run.status == RunStatus.RUNNING:
        pending = tuple(session.execute(select(col(SyncPart.name)).where(
            col(SyncPart.run_id) == run.id, col(SyncPart.phase) == PartPhase.FETCH,
            col(SyncPart.status) == PartStatus.PENDING)).scalars())
    return StartResult(run_id=run.id, skipped=run.status == RunStatus.SKIPPED, parts=pending, reason=run.error)


def start_run(engine: Engine, connector: ConnectorConfig, *, trigger: Trigger, task_id: str | None,
              stale_after: timedelta, wait_for_refresh: bool = True) -> StartResult:
    """Open a run with its parts pending, or record a skip when the connector already has an active run; with
    ``wait_for_refresh``, an active incremental run gives ``retry`` instead (the caller tries again shortly)."""
    now = utcnow()
    trigger = Trigger(trigger)
    plan = plan_parts(connector)
    with Session(engine) as session:
        connector_id = register_connector(session, connector)
        if task_id is not None:
            again = _redelivered(session, task_id)
            if again is not None:
                return again
        reap_stale_runs(session, connector_id, stale_after, now)
        run = SyncRun(connector_id=connector_id, status=RUNS.create(RunStatus.RUNNING), trigger=trigger,
                      task_id=task_id, started_at=now)
        session.add(run)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return _skip(session, connector, connector_id, trigger, task_id, now, wait_for_refresh)
        assert run.id is not None  # flushed
        for name in plan.fetch:
            session.add(SyncPart(run_id=run.id, name=name, phase=PartPhase.FETCH,
                                 status=PARTS.create(PartStatus.PENDING)))
        for name in plan.derive:
            session.add(SyncPart(run_id=run.id, name=name, phase=PartPhase.DERIVE,
                                 status=PARTS.create(PartStatus.PENDING)))
        session.commit()
        return StartResult(run_id=run.id, skipped=False, parts=plan.fetch)


def _skip(session: Session, connector: ConnectorConfig, connector_id: int, trigger: Trigger, task_id: str | None,
          now: datetime, wait_for_refresh: bool) -> StartResult:
    """The connector has an active run: record this trigger skipped, or (``wait_for_refresh`` and the active run
    is an incremental refresh) ask the caller to try again shortly."""
    active = session.execute(select(col(SyncRun.id), col(SyncRun.trigger)).where(
        col(SyncRun.connector_id) == connector_id, col(SyncRun.status).in_(ACTIVE_RUN_STATUSES))).first()
    reason = f"run {active.id if active else None} of connector {connector.name!r} is still active"
    if wait_for_refresh and active is not None and active.trigger == Trigger.EVENTS:
        return StartResult(run_id=active.id, skipped=True, reason=reason, retry=True)
    skipped = SyncRun(connector_id=connector_id, status=RUNS.create(RunStatus.SKIPPED), trigger=trigger,
                      task_id=task_id, started_at=now, finished_at=now, error=reason)
    session.add(skipped)
    session.commit()
    assert skipped.id is not None  # committed
    metrics.observe_run(connector.name, RunStatus.SKIPPED, None)
    return StartResult(run_id=skipped.id, skipped=True, reason=reason)


def active_run(engine: Engine, connector_id: int) -> tuple[int, Trigger] | None:
    """(id, trigger) of the connector's active run, if it has one."""
    with Session(engine) as session:
        row = session.execute(select(col(SyncRun.id), col(SyncRun.trigger)).where(
            col(SyncRun.connector_id) == connector_id, ACTIVE_RUN_PREDICATE)).first()
        return (row.id, Trigger(row.trigger)) if row else None


@dataclass(frozen=True)
class FullSync:
    run_id: int
    started_at: datetime
    requests: int  # what the run cost: the yardstick of an incremental refresh


def last_complete_sync(engine: Engine, connector_id: int) -> FullSync | None:
    """The connector's latest ended full sync whose fetch parts all read their whole listing (succeeded, or held
    their deletions), if any: every change before its start is in the database but for held deletions, which
    the events do not bring either."""
    incomplete = select(col(SyncPart.id)).where(
        col(SyncPart.run_id) == SyncRun.id, col(SyncPart.phase) == PartPhase.FETCH,
        col(SyncPart.status).not_in(USABLE_PART_STATUSES)).exists()
    with Session(engine) as session:
        row = session.execute(select(col(SyncRun.id), col(SyncRun.started_at)).where(
            col(SyncRun.connector_id) == connector_id,
            col(SyncRun.status).in_((RunStatus.SUCCEEDED, RunStatus.PARTIAL)),
            col(SyncRun.trigger) != Trigger.EVENTS, ~incomplete).order_by(col(SyncRun.id).desc()).limit(1)).first()
        if row is None:
            return None
        requests = session.execute(select(func.coalesce(func.sum(col(SyncPart.requests)), 0)).where(
            col(SyncPart.run_id) == row.id)).scalar_one()
        return FullSync(row.id, row.started_at, int(requests))
