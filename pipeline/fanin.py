"""The end of a sync run: fan-in once every fetch part has ended, then the final status from the parts.

Fan-in goes through the database rather than a Celery chord: each part records its end, and the part whose
end completes the set flips the run from ``running`` to ``finalizing`` with a conditional update; only the
process whose update matched enqueues the finalizer. A redelivered part that finds itself already ended asks
again, so a finalizer lost in a crash is sent again, and finalizing twice is harmless (it too is conditional).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session

from models.states import ENDED_PART_STATUSES
from models.tables import Connector, SyncPart, SyncRun, utcnow
from telemetry import metrics


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
