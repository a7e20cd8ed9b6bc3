"""The run of an incremental refresh (trigger ``events``): opened with its one part already running, in the
process that refreshes (never as a ``sync.part`` message), and ended with its part in one transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.tables import EVENTS_TRIGGER, SyncPart, SyncRun, utcnow

#: An incremental run (trigger ``events``) still active after this lost its worker: it is failed, so that it
#: does not hold back the full sync for ``stale_run_after``. Its task's time limit is well below it.
EVENTS_RUN_STALE_AFTER = timedelta(minutes=8)
#: The one part of an incremental run.
EVENTS_PART = "events"


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
