"""The sync reaper, run by beat every minute: no run stays active forever, and no run waits on a lost message.

Messages can be lost between a database commit and the broker (a crash in between, a broker restart without
persistence). The reaper finds what such a loss leaves behind and says what to send again; sending twice is
harmless because claims and the fan-in are conditional updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from models.states import ACTIVE_RUN_STATUSES, ENDED_PART_STATUSES, PartPhase, PartStatus, RunStatus, Trigger
from models.tables import Connector, SyncPart, SyncRun, utcnow
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
        out.parts = [(run_id, part, connector) for run_id, part, connector in session.execute(
            select(col(SyncPart.run_id), col(SyncPart.name), col(Connector.name))
            .join(SyncRun, col(SyncRun.id) == SyncPart.run_id)
            .join(Connector, col(Connector.id) == SyncRun.connector_id)
            .where(col(SyncRun.status) == RunStatus.RUNNING, col(SyncPart.phase) == PartPhase.FETCH,
                   col(SyncPart.status) == PartStatus.PENDING, col(SyncRun.started_at) < now - PART_RELAY_AFTER))]
        active = select(col(SyncRun.id)).where(ACTIVE_RUN_PREDICATE, col(SyncRun.trigger) != Trigger.EVENTS)
        last_end = (select(col(SyncPart.run_id), func.max(col(SyncPart.finished_at)).label("ended"))
                    .where(col(SyncPart.phase) == PartPhase.FETCH, col(SyncPart.run_id).in_(active))
                    .group_by(col(SyncPart.run_id)).subquery())
        stuck = session.execute(
            select(col(SyncRun.id), col(Connector.name))
            .join(Connector, col(Connector.id) == SyncRun.connector_id)
            .join(last_end, last_end.c.run_id == SyncRun.id)
            .where(col(SyncRun.status).in_(ACTIVE_RUN_STATUSES), last_end.c.ended < now - FINALIZE_RELAY_AFTER)).all()
        for run_id, connector in stuck:
            open_parts = session.execute(select(func.count()).select_from(SyncPart).where(
                col(SyncPart.run_id) == run_id, col(SyncPart.phase) == PartPhase.FETCH,
                col(SyncPart.status).not_in(ENDED_PART_STATUSES))).scalar_one()
            if not open_parts:  # every fetch part ended, yet nobody finalized (or even flipped the run)
                out.finalize.append((run_id, connector))
    return out
