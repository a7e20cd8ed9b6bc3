"""The sync reaper, run by beat every minute: no run stays active forever, and no run waits on a lost message.

Messages can be lost between a database commit and the broker (a crash in between, a broker restart without
persistence). The reaper finds what such a loss leaves behind and says what to send again; sending twice is
harmless because claims and the fan-in are conditional updates.

The rule for a lost message: a run is *idle* when none of its parts is ``running`` and nothing of it was heard
for ``LOST_AFTER`` (no part started or ended, the run itself not opened). An idle run that still has fetch parts
pending lost their messages; an idle run whose fetch parts have all ended lost its finalizer (the last part died
before or while finalizing, or the finalizer's message was lost). Both are sent again, so with beat running the
reaper every minute such a run moves on within two minutes.

The rule for a lost process: a part that is ``running`` renews its lease while its process works
(``pipeline.claims.PartLease``). One whose lease is older than ``PART_LEASE`` lost its process (a host gone, a
process killed, an end that could not be recorded while the database was down): it is handed back to
``pending`` and sent again (a derived part: its run's finalizer), whatever the broker's ``visibility_timeout``;
the lost attempt, if it still runs somewhere, records nothing. A run whose messages cannot come back at all
(their broker was replaced) is failed by whoever knows that (``jumpsync up`` with its own Redis:
``runs.abandon_orphaned_runs``), else by ``stale_run_after``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from models.states import ENDED_PART_STATUSES, PARTS, PartPhase, PartStatus, RunStatus, Trigger
from models.tables import Connector, SyncPart, SyncRun, utcnow
from pipeline.claims import PART_LEASE
from pipeline.runs import ACTIVE_RUN_PREDICATE, reap_stale_runs

log = logging.getLogger(__name__)

#: A run none of whose parts runs, not heard from this long, lost a message: its pending parts or its finalizer
#: are sent again. Longer than a queued message waits on a fleet sized as docs/operations.md says (a part queued
#: longer is sent twice: the second delivery takes the part over, wasted work but no harm).
LOST_AFTER = timedelta(seconds=60)


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
        _hand_over_lost_parts(session, now - PART_LEASE, out)
        for run_id, status, connector in session.execute(_idle_runs(now - LOST_AFTER)).all():
            if any(run == run_id for run, _ in out.finalize) or any(run == run_id for run, _, _ in out.parts):
                continue  # sent already, as handed over
            pending = session.execute(select(col(SyncPart.name)).where(
                col(SyncPart.run_id) == run_id, col(SyncPart.phase) == PartPhase.FETCH,
                col(SyncPart.status).not_in(ENDED_PART_STATUSES)).order_by(col(SyncPart.name))).scalars().all()
            if pending and status == RunStatus.RUNNING:  # their messages were lost
                out.parts.extend((run_id, part, connector) for part in pending)
            elif not pending:  # every fetch part ended, yet nobody finalized (or even flipped the run)
                out.finalize.append((run_id, connector))
    return out


def waiting_on_broker(engine: Engine) -> Reaped:
    """Every message the active full syncs wait for: their pending fetch parts (of a running run) and the
    finalizer of a run whose fetch parts all ended. What to send again when the broker lost its data
    (``worker.broker_epoch``)."""
    out = Reaped()
    with Session(engine) as session:
        runs = session.execute(select(col(SyncRun.id), col(SyncRun.status), col(Connector.name))
                               .join(Connector, col(Connector.id) == SyncRun.connector_id)
                               .where(ACTIVE_RUN_PREDICATE, col(SyncRun.trigger) != Trigger.EVENTS)
                               .order_by(col(SyncRun.id))).all()
        for run_id, status, connector in runs:
            open_fetch = session.execute(select(col(SyncPart.name), col(SyncPart.status)).where(
                col(SyncPart.run_id) == run_id, col(SyncPart.phase) == PartPhase.FETCH,
                col(SyncPart.status).not_in(ENDED_PART_STATUSES)).order_by(col(SyncPart.name))).all()
            if status == RunStatus.RUNNING:
                out.parts.extend((run_id, name, connector) for name, part_status in open_fetch
                                 if part_status == PartStatus.PENDING)
            if not open_fetch:
                out.finalize.append((run_id, connector))
    return out


def _hand_over_lost_parts(session: Session, renewed_before: datetime, out: Reaped) -> None:
    """Running parts of active runs whose lease was last renewed before ``renewed_before``: back to pending (if
    still so: a conditional update), to be sent again."""
    lease = func.coalesce(col(SyncPart.heartbeat_at), col(SyncPart.started_at))
    lost = session.execute(
        select(col(SyncPart.id), col(SyncPart.run_id), col(SyncPart.name), col(SyncPart.phase),
               col(SyncPart.attempt), col(Connector.name))
        .join(SyncRun, col(SyncRun.id) == SyncPart.run_id)
        .join(Connector, col(Connector.id) == SyncRun.connector_id)
        .where(ACTIVE_RUN_PREDICATE, col(SyncPart.status) == PartStatus.RUNNING, lease < renewed_before)
        .order_by(col(SyncPart.id))).all()
    for part_id, run_id, name, phase, attempt, connector in lost:
        moved = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.id) == part_id, col(SyncPart.attempt) == attempt,
            col(SyncPart.status) == PartStatus.RUNNING, lease < renewed_before,
        ).values(status=PARTS.move(PartStatus.RUNNING, PartStatus.PENDING), heartbeat_at=None,
                 error=f"handed over: attempt {attempt}'s process stopped renewing its lease")))
        if moved.rowcount != 1:
            continue
        log.warning("sync part handed over: its process stopped renewing its lease",
                    extra={"run_id": run_id, "part": name, "attempt": attempt, "connector": connector})
        if phase == PartPhase.FETCH:
            out.parts.append((run_id, name, connector))
        elif (run_id, connector) not in out.finalize:  # a derived part runs in its run's finalizer
            out.finalize.append((run_id, connector))
    session.commit()


def _idle_runs(heard_before: datetime):
    """(run id, status, connector) of the active full syncs none of whose parts runs, not heard from since
    ``heard_before``."""
    part = aliased(SyncPart)
    of_run = col(part.run_id) == SyncRun.id
    running = select(col(part.id)).where(of_run, col(part.status) == PartStatus.RUNNING).exists()
    heard = select(col(part.id)).where(of_run, or_(col(part.started_at) >= heard_before,
                                                   col(part.finished_at) >= heard_before)).exists()
    return (select(col(SyncRun.id), col(SyncRun.status), col(Connector.name))
            .join(Connector, col(Connector.id) == SyncRun.connector_id)
            .where(ACTIVE_RUN_PREDICATE, col(SyncRun.trigger) != Trigger.EVENTS,
                   col(SyncRun.started_at) < heard_before, ~running, ~heard)
            .order_by(col(SyncRun.id)))
