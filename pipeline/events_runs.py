"""The run of an incremental refresh (trigger ``events``): opened with its one part already running, in the
process that refreshes (never as a ``sync.part`` message), and ended with its part in one transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from models.states import PARTS, RUNS, IllegalTransition, PartPhase, PartStatus, RunStatus, Trigger
from models.tables import SyncPart, SyncRun, utcnow

#: An incremental run (trigger ``events``) still active after this lost its worker: it is failed, so that it
#: does not hold back the full sync for ``stale_run_after``. Its task's time limit is well below it.
EVENTS_RUN_STALE_AFTER = timedelta(minutes=8)
#: The one part of an incremental run.
EVENTS_PART = "events"
#: How an incremental run may end, and its part with it (it has no finalizer, so it is never partial).
_ENDS = {RunStatus.SUCCEEDED: PartStatus.SUCCEEDED, RunStatus.FAILED: PartStatus.FAILED}


def open_events_run(engine: Engine, connector_id: int) -> int | None:
    """Open an incremental run with its one part already running (it runs in the caller, never as a
    ``sync.part`` message); None when the connector has an active run (a full sync goes first)."""
    now = utcnow()
    with Session(engine) as session:
        run = SyncRun(connector_id=connector_id, status=RUNS.create(RunStatus.RUNNING), trigger=Trigger.EVENTS,
                      started_at=now)
        session.add(run)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return None
        assert run.id is not None  # flushed
        session.add(SyncPart(run_id=run.id, name=EVENTS_PART, phase=PartPhase.FETCH,
                             status=PARTS.create(PartStatus.RUNNING), attempt=1, started_at=now))
        session.commit()
        return run.id


def end_events_run(engine: Engine, run_id: int, *, status: RunStatus, counts: dict[str, int], requests: int,
                   error: str | None = None) -> bool:
    """End an incremental run and its part together, both with ``status`` (one transaction: the reaper never sees
    one without the other); False when the reaper had ended it already. ``IllegalTransition`` (and nothing
    written) for a status a running run or part may not move to."""
    run_status = RUNS.move(RunStatus.RUNNING, RunStatus(status))
    if run_status not in _ENDS:
        raise IllegalTransition(f"an incremental run ends {' or '.join(_ENDS)}, not {run_status}")
    part_status = PARTS.move(PartStatus.RUNNING, _ENDS[run_status])
    now = utcnow()
    with Session(engine) as session:
        session.execute(update(SyncPart).where(col(SyncPart.run_id) == run_id,
                                               col(SyncPart.status) == PartStatus.RUNNING)
                        .values(status=part_status, finished_at=now, counts=counts, requests=requests, error=error))
        result = cast(CursorResult[Any], session.execute(update(SyncRun).where(
            col(SyncRun.id) == run_id, col(SyncRun.status) == RunStatus.RUNNING)
            .values(status=run_status, finished_at=now, error=error)))
        ended = result.rowcount == 1
        session.commit()
        return ended
