"""Deleting run records that say nothing any more: old incremental runs and old skips
(``jumpsync.history.prune``, daily)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Engine, delete, select
from sqlmodel import Session, col

from models.states import ACTIVE_RUN_STATUSES, RunStatus, Trigger
from models.tables import SyncPart, SyncRun

#: Incremental runs are kept this long (one a minute per connector while changes come); their changes keep the
#: run id. ``jumpsync.history.prune`` removes older ones daily.
EVENTS_RUN_RETENTION = timedelta(days=7)


def prune_events_runs(engine: Engine, older_than: datetime) -> int:
    """Delete ended incremental runs that started before ``older_than``, with their parts."""
    return _prune_runs(engine, older_than, col(SyncRun.trigger) == Trigger.EVENTS)


def prune_skipped_runs(engine: Engine, older_than: datetime) -> int:
    """Delete the records of triggers that found their connector busy (``skipped``), from before ``older_than``:
    a saturated fleet records many (beat's trigger of a connector still syncing) and they say nothing later."""
    return _prune_runs(engine, older_than, col(SyncRun.status) == RunStatus.SKIPPED)


def _prune_runs(engine: Engine, older_than: datetime, which: ColumnElement[bool]) -> int:
    old = select(col(SyncRun.id)).where(which, col(SyncRun.started_at) < older_than,
                                        col(SyncRun.status).not_in(ACTIVE_RUN_STATUSES))
    with Session(engine) as session:
        session.execute(delete(SyncPart).where(col(SyncPart.run_id).in_(old)))
        result = cast(CursorResult[Any], session.execute(delete(SyncRun).where(col(SyncRun.id).in_(old))))
        deleted = result.rowcount or 0
        session.commit()
        return deleted
