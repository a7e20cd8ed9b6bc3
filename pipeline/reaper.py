"""The sync reaper, run by beat every minute: no run stays active forever, and no run waits on a lost message.

Messages can be lost between a database commit and the broker (a crash in between, a broker restart without
persistence). The reaper finds what such a loss leaves behind and says what to send again; sending twice is
harmless because claims and the fan-in are conditional updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from models.states import ENDED_PART_STATUSES
from models.tables import EVENTS_TRIGGER, Connector, SyncPart, SyncRun, utcnow
from pipeline.runs import ACTIVE_RUN_PREDICATE, reap_stale_runs

#: A part still pending this long after its run started lost its message.
PART_RELAY_AFTER = timedelta(minutes=5)
#: A run whose fetch parts all ended this long ago and that is still finalizing lost its finalizer.
FINALIZE_RELAY_AFTER = timedelta(minutes=2)


@dataclass
class Reaped:
    failed_runs: int = 0
    parts: list[tuple[int, str, str]] = field(default_factory=list)     # (run id, part, connector) to send
    finalize: list[tuple[int, str]] = field(default_factory=list)        # (run id, connector) to send


def reap(engine: Engine, stale_after: timedelta) -> Reaped:
    now = utcnow()
    out = Reaped()
    with Session(engine) as session:
        out.failed_runs = reap_stale_runs(session, None, stale_after, now)
        out.parts = [tuple(row) for row in session.execute(
            select(SyncPart.run_id, SyncPart.name, Connector.name)
            .join(SyncRun, SyncRun.id == SyncPart.run_id).join(Connector, Connector.id == SyncRun.connector_id)
            .where(SyncRun.status == "running", SyncPart.phase == "fetch", SyncPart.status == "pending",
                   SyncRun.started_at < now - PART_RELAY_AFTER))]
        active = select(SyncRun.id).where(ACTIVE_RUN_PREDICATE, SyncRun.trigger != EVENTS_TRIGGER)
        last_end = (select(SyncPart.run_id, func.max(SyncPart.finished_at).label("ended"))
                    .where(SyncPart.phase == "fetch", SyncPart.run_id.in_(active)).group_by(SyncPart.run_id).subquery())
        stuck = session.execute(
            select(SyncRun.id, Connector.name, SyncRun.status)
            .join(Connector, Connector.id == SyncRun.connector_id).join(last_end, last_end.c.run_id == SyncRun.id)
            .where(SyncRun.status.in_(("running", "finalizing")), last_end.c.ended < now - FINALIZE_RELAY_AFTER)).all()
        for run_id, connector, status in stuck:
            open_parts = session.execute(select(func.count()).select_from(SyncPart).where(
                SyncPart.run_id == run_id, SyncPart.phase == "fetch",
                SyncPart.status.not_in(ENDED_PART_STATUSES))).scalar_one()
            if not open_parts:  # every fetch part ended, yet nobody finalized (or even flipped the run)
                out.finalize.append((run_id, connector))
    return out
