"""Deleting run records that say nothing any more: old incremental runs and old skips
(``jumpsync.history.prune``, daily)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlmodel import Session

from models.tables import ACTIVE_RUN_STATUSES, EVENTS_TRIGGER, SyncPart, SyncRun

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
