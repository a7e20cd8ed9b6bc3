"""The life of a sync run, in the database: start (or skip), claim and end parts, fan in, finish.

Fan-in goes through the database rather than a Celery chord: each part records its end, and the part whose
end completes the set flips the run from ``running`` to ``finalizing`` with a conditional update; only the
process whose update matched enqueues the finalizer. A redelivered part that finds itself already ended asks
again, so a finalizer lost in a crash is sent again, and finalizing twice is harmless (it too is conditional).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from config.settings import ConnectorConfig
from connector import FETCH_SYNCERS
from models.connectors import register_connector
from models.tables import ACTIVE_RUN_STATUSES, EVENTS_TRIGGER, Connector, SyncPart, SyncRun, utcnow
from telemetry import metrics

#: ``held``: the listing was complete but the deletion safety valve kept its deletions (pipeline.valve).
ENDED_PART_STATUSES = ("succeeded", "failed", "skipped", "held")
USABLE_PART_STATUSES = ("succeeded", "held")  # what derived parts may read: every row is fresh or still live

#: Derived parts: name -> the fetch parts whose data they read. They run in the finalizer, in this order.
DERIVED_PARTS: dict[str, tuple[str, ...]] = {
    "role": ("admin",),
    "admin_link": ("admin", "user"),
    "app_via_group": ("app", "group"),
}


@dataclass(frozen=True)
class PartPlan:
    fetch: tuple[str, ...]
    derive: tuple[str, ...]


def plan_parts(connector: ConnectorConfig) -> PartPlan:
    """Which parts a run of this connector has, from its ``resource_types``."""
    types = set(connector.resource_types)
    fetch = tuple(t for t in FETCH_SYNCERS if t in types)
    derive = tuple(name for name, inputs in DERIVED_PARTS.items()
                   if set(inputs) <= types and (name != "role" or "role" in types))
    return PartPlan(fetch=fetch, derive=derive)


#: An incremental run (trigger ``events``) still active after this lost its worker: it is failed, so that it
#: does not hold back the full sync for ``stale_run_after``. Its task's time limit is well below it.
EVENTS_RUN_STALE_AFTER = timedelta(minutes=8)
#: The one part of an incremental run.
EVENTS_PART = "events"


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


#: Incremental runs are kept this long (one a minute per connector while changes come); their changes keep the
#: run id. ``jumpsync.history.prune`` removes older ones daily.
EVENTS_RUN_RETENTION = timedelta(days=7)


def prune_events_runs(engine: Engine, older_than: datetime) -> int:
    """Delete ended incremental runs that started before ``older_than``, with their parts."""
    return _prune_runs(engine, older_than, SyncRun.trigger == EVENTS_TRIGGER)


def prune_skipped_runs(engine: Engine, older_than: datetime) -> int:
    """Delete the records of triggers that found their connector busy (``skipped``), from before ``older_than``:
    a saturated fleet records many (beat's trigger of a connector still syncing) and they say nothing later."""
    return _prune_runs(engine, older_than, SyncRun.status == "skipped")


def _prune_runs(engine: Engine, older_than: datetime, which) -> int:
    old = select(SyncRun.id).where(which, SyncRun.started_at < older_than,
                                   SyncRun.status.not_in(ACTIVE_RUN_STATUSES))
    with Session(engine) as session:
        session.execute(delete(SyncPart).where(SyncPart.run_id.in_(old)))
        deleted = session.execute(delete(SyncRun).where(SyncRun.id.in_(old))).rowcount or 0
        session.commit()
        return deleted


def open_events_run(engine: Engine, connector_id: int) -> int | None:
    """Open an incremental run with its one part already running (it runs in the caller, never as a
    ``sync.part`` message); None when the connector has an active run (a full sync goes first)."""
    now = utcnow()
    with Session(engine) as session:
        run = SyncRun(connector_id=connector_id, status="running", trigger=EVENTS_TRIGGER, started_at=now)
        session.add(run)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return None
        session.add(SyncPart(run_id=run.id, name=EVENTS_PART, phase="fetch", status="running", attempt=1,
                             started_at=now))
        session.commit()
        return run.id


def end_events_run(engine: Engine, run_id: int, *, status: str, counts: dict[str, int], requests: int,
                   error: str | None = None) -> bool:
    """End an incremental run and its part together (one transaction: the reaper never sees one without the
    other); False when the reaper had ended it already."""
    now = utcnow()
    with Session(engine) as session:
        session.execute(update(SyncPart).where(SyncPart.run_id == run_id, SyncPart.status == "running").values(
            status=status, finished_at=now, counts=counts, requests=requests, error=error))
        ended = session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == "running").values(
            status=status, finished_at=now, error=error)).rowcount == 1
        session.commit()
        return ended


@dataclass
class Claim:
    """The outcome of trying to claim a part: run it (``attempt``), or not (``reason``)."""

    attempt: int | None
    reason: str | None = None
    connector_name: str | None = None
    connector_id: int | None = None


def claim_part(engine: Engine, run_id: int, name: str, *, run_status: str = "running") -> Claim:
    """Mark a part running for this attempt. A redelivered part (its worker died) is taken over.

    Fetch parts run while the run is ``running``; derived parts while it is ``finalizing``.
    """
    with Session(engine) as session:
        row = session.execute(
            select(SyncPart, SyncRun.status, Connector.name, Connector.id)
            .join(SyncRun, SyncRun.id == SyncPart.run_id).join(Connector, Connector.id == SyncRun.connector_id)
            .where(SyncPart.run_id == run_id, SyncPart.name == name)).first()
        if row is None:
            return Claim(None, f"run {run_id} has no part {name!r}")
        part, current_run_status, connector_name, connector_id = row
        if part.status in ENDED_PART_STATUSES:
            return Claim(None, f"part already {part.status}", connector_name, connector_id)
        if current_run_status != run_status:
            return Claim(None, f"run is {current_run_status}", connector_name, connector_id)
        attempt = part.attempt + 1  # read before the commit below expires ``part``
        result = session.execute(update(SyncPart).where(
            SyncPart.id == part.id, SyncPart.attempt == part.attempt, SyncPart.status == part.status,
        ).values(status="running", attempt=attempt, started_at=utcnow(), error=None))
        session.commit()
        if result.rowcount != 1:
            return Claim(None, "claimed by another worker", connector_name, connector_id)
        return Claim(attempt, None, connector_name, connector_id)


def end_part(engine: Engine, run_id: int, name: str, attempt: int, *, status: str,
             counts: dict[str, int] | None = None, requests: int = 0, error: str | None = None) -> bool:
    """Record a part's end, if this attempt still owns it."""
    with Session(engine) as session:
        result = session.execute(update(SyncPart).where(
            SyncPart.run_id == run_id, SyncPart.name == name, SyncPart.attempt == attempt,
            SyncPart.status == "running",
        ).values(status=status, finished_at=utcnow(), counts=counts or {}, requests=requests, error=error))
        session.commit()
        return result.rowcount == 1


def try_begin_finalize(engine: Engine, run_id: int, *, again: bool = False) -> bool:
    """True for exactly one caller once every fetch part has ended: that caller enqueues the finalizer.

    With ``again`` (a redelivered part, whose first delivery may have died after flipping the run but before
    enqueuing), a run already ``finalizing`` also gives True. Not otherwise: two parts ending at once would
    both enqueue it, and one finalizer could end the run while the other still derives (``finish_run`` now
    waits for that, but one finalizer is the rule; the reaper sends another for a run left finalizing).
    """
    with Session(engine) as session:
        open_parts = session.execute(select(func.count()).select_from(SyncPart).where(
            SyncPart.run_id == run_id, SyncPart.phase == "fetch",
            SyncPart.status.not_in(ENDED_PART_STATUSES))).scalar_one()
        if open_parts:
            return False
        result = session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == "running")
                                 .values(status="finalizing"))
        session.commit()
        if result.rowcount == 1:
            return True
        if not again:
            return False
        status = session.execute(select(SyncRun.status).where(SyncRun.id == run_id)).scalar_one_or_none()
        return status == "finalizing"


@dataclass
class RunSummary:
    run_id: int
    status: str
    error: str | None = None
    parts: dict[str, str] = field(default_factory=dict)


def finish_run(engine: Engine, run_id: int) -> RunSummary:
    """Set the run's final status from its parts: succeeded, partial (some failed) or failed (none succeeded);
    not while a part has not ended."""
    with Session(engine) as session:
        parts = session.exec(select(SyncPart).where(SyncPart.run_id == run_id)).scalars().all()
        # A part not ended yet: another (re-sent) finalizer still derives; it ends the run when it is done, and
        # the reaper sends one again if it died.
        if all(p.status in ENDED_PART_STATUSES for p in parts):
            _set_final_status(session, run_id, parts)
        final = session.execute(select(SyncRun.status, SyncRun.error).where(SyncRun.id == run_id)).one()
        return RunSummary(run_id, final[0], final[1], {p.name: p.status for p in parts})


def _set_final_status(session: Session, run_id: int, parts: list[SyncPart]) -> None:
    failed = [p for p in parts if p.status in ("failed", "held")]
    succeeded = [p for p in parts if p.status == "succeeded"]
    if not failed:
        status = "succeeded"
    elif succeeded:
        status = "partial"
    else:
        status = "failed"
    error = "; ".join(f"{p.name}: {p.error}" for p in failed) or None
    finished = utcnow()
    result = session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == "finalizing")
                             .values(status=status, finished_at=finished, error=error))
    session.commit()
    if result.rowcount == 1:
        name, started = session.execute(select(Connector.name, SyncRun.started_at).join(
            SyncRun, SyncRun.connector_id == Connector.id).where(SyncRun.id == run_id)).one()
        metrics.observe_run(name, status, (finished - started).total_seconds())
