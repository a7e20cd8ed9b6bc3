"""The end of a sync run: fan-in once every fetch part has ended, then the final status from the parts.

Fan-in goes through the database rather than a Celery chord: each part records its end, and the part whose
end completes the set flips the run from ``running`` to ``finalizing`` with a conditional update; only the
process whose update matched runs the finalizer (in the same task: ``tasks.sync.sync_part``). A redelivered part
that finds itself already ended asks again, so a finalizer lost in a crash runs again, and finalizing twice is
harmless (it too is conditional).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, select, update
from sqlmodel import Session, col

from models.states import ENDED_PART_STATUSES, RUNS, PartPhase, PartStatus, RunStatus
from models.tables import Connector, SyncPart, SyncRun, utcnow
from telemetry import metrics

#: The parts that make a run partial or failed: failed, or held by the deletion safety valve.
_NOT_DONE = (PartStatus.FAILED, PartStatus.HELD)


def try_begin_finalize(engine: Engine, run_id: int, *, again: bool = False) -> bool:
    """True for exactly one caller once every fetch part has ended: that caller runs the finalizer.

    With ``again`` (a redelivered part, whose first delivery may have died after flipping the run but before
    finalizing), a run already ``finalizing`` also gives True. Not otherwise: two parts ending at once would
    both run it, and one finalizer could end the run while the other still derives (``finish_run``
    waits for that, but one finalizer is the rule; the reaper sends another for a run left finalizing).
    """
    with Session(engine) as session:
        open_parts = session.execute(select(func.count()).select_from(SyncPart).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.phase) == PartPhase.FETCH,
            col(SyncPart.status).not_in(ENDED_PART_STATUSES))).scalar_one()
        if open_parts:
            return False
        finalizing = RUNS.move(RunStatus.RUNNING, RunStatus.FINALIZING)
        result = cast(CursorResult[Any], session.execute(update(SyncRun).where(
            col(SyncRun.id) == run_id, col(SyncRun.status) == RunStatus.RUNNING).values(status=finalizing)))
        session.commit()
        if result.rowcount == 1:
            return True
        if not again:
            return False
        status = session.execute(select(col(SyncRun.status)).where(col(SyncRun.id) == run_id)).scalar_one_or_none()
        return status == RunStatus.FINALIZING


@dataclass
class RunSummary:
    run_id: int
    status: RunStatus
    error: str | None = None
    parts: dict[str, PartStatus] = field(default_factory=dict)


def finish_run(engine: Engine, run_id: int) -> RunSummary:
    """Set the run's final status from its parts: succeeded, partial (some failed) or failed (none succeeded);
    not while a part has not ended."""
    with Session(engine) as session:
        parts = session.execute(select(SyncPart).where(col(SyncPart.run_id) == run_id)).scalars().all()
        # A part not ended yet: another (re-sent) finalizer still derives; it ends the run when it is done, and
        # the reaper sends one again if it died.
        if all(p.status in ENDED_PART_STATUSES for p in parts):
            _set_final_status(session, run_id, parts)
        status, error = session.execute(select(col(SyncRun.status), col(SyncRun.error))
                                        .where(col(SyncRun.id) == run_id)).one()
        return RunSummary(run_id, RunStatus(status), error, {p.name: PartStatus(p.status) for p in parts})


def _final_status(parts: Sequence[SyncPart]) -> RunStatus:
    """Succeeded when no part failed or held; partial when some did and some succeeded; else failed."""
    if not any(p.status in _NOT_DONE for p in parts):
        return RunStatus.SUCCEEDED
    return RunStatus.PARTIAL if any(p.status == PartStatus.SUCCEEDED for p in parts) else RunStatus.FAILED


def _set_final_status(session: Session, run_id: int, parts: Sequence[SyncPart]) -> None:
    status = RUNS.move(RunStatus.FINALIZING, _final_status(parts))
    error = "; ".join(f"{p.name}: {p.error}" for p in parts if p.status in _NOT_DONE) or None
    finished = utcnow()
    result = cast(CursorResult[Any], session.execute(update(SyncRun).where(
        col(SyncRun.id) == run_id, col(SyncRun.status) == RunStatus.FINALIZING)
        .values(status=status, finished_at=finished, error=error)))
    session.commit()
    if result.rowcount == 1:
        name, started = session.execute(select(col(Connector.name), col(SyncRun.started_at)).join(
            SyncRun, col(SyncRun.connector_id) == Connector.id).where(col(SyncRun.id) == run_id)).one()
        metrics.observe_run(name, status, (finished - started).total_seconds())
