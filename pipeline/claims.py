"""Claiming a part of a run for one attempt, and recording its end if that attempt still owns it.

Both are conditional updates: a redelivered part (its worker died) is taken over with the next attempt, and an
attempt that lost its part records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, select, update
from sqlmodel import Session, col

from models.states import ENDED_PART_STATUSES, PARTS, PartStatus, RunStatus
from models.tables import Connector, SyncPart, SyncRun, utcnow


@dataclass
class Claim:
    """The outcome of trying to claim a part: run it (``attempt``), or not (``reason``)."""

    attempt: int | None
    reason: str | None = None
    connector_name: str | None = None
    connector_id: int | None = None


def claim_part(engine: Engine, run_id: int, name: str, *, run_status: RunStatus = RunStatus.RUNNING) -> Claim:
    """Mark a part running for this attempt. A redelivered part (its worker died) is taken over.

    Fetch parts run while the run is ``running``; derived parts while it is ``finalizing``.
    """
    with Session(engine) as session:
        row = session.execute(
            select(SyncPart, col(SyncRun.status), col(Connector.name), col(Connector.id))
            .join(SyncRun, col(SyncRun.id) == SyncPart.run_id)
            .join(Connector, col(Connector.id) == SyncRun.connector_id)
            .where(col(SyncPart.run_id) == run_id, col(SyncPart.name) == name)).first()
        if row is None:
            return Claim(None, f"run {run_id} has no part {name!r}")
        part, current_run_status, connector_name, connector_id = row
        if part.status in ENDED_PART_STATUSES:
            return Claim(None, f"part already {part.status}", connector_name, connector_id)
        if current_run_status != run_status:
            return Claim(None, f"run is {current_run_status}", connector_name, connector_id)
        attempt = part.attempt + 1  # read before the commit below expires ``part``
        current = PartStatus(part.status)
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.id) == part.id, col(SyncPart.attempt) == part.attempt, col(SyncPart.status) == current,
        ).values(status=PARTS.move(current, PartStatus.RUNNING), attempt=attempt, started_at=utcnow(), error=None)))
        session.commit()
        if result.rowcount != 1:
            return Claim(None, "claimed by another worker", connector_name, connector_id)
        return Claim(attempt, None, connector_name, connector_id)


def end_part(engine: Engine, run_id: int, name: str, attempt: int, *, status: PartStatus,
             counts: dict[str, int] | None = None, requests: int = 0, error: str | None = None) -> bool:
    """Record a part's end, if this attempt still owns it. ``IllegalTransition`` (and nothing written) for a
    status a running part may not move to."""
    target = PARTS.move(PartStatus.RUNNING, PartStatus(status))
    with Session(engine) as session:
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.name) == name, col(SyncPart.attempt) == attempt,
            col(SyncPart.status) == PartStatus.RUNNING,
        ).values(status=target, finished_at=utcnow(), counts=counts or {}, requests=requests, error=error)))
        session.commit()
        return result.rowcount == 1
