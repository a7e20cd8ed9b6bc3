"""Claiming a part of a run for one attempt, renewing its lease while it runs, and recording its end if that
attempt still owns it.

All are conditional updates: a redelivered part (its worker died) is taken over with the next attempt, and an
attempt that lost its part records nothing. The lease (``heartbeat_at``) is what tells a part whose process is
gone from one that is slow: a thread of the running process renews it every ``HEARTBEAT_EVERY``; the reaper
(``pipeline.reaper``) hands over a running part whose lease is older than ``PART_LEASE``, whatever the broker's
visibility timeout, and a process that finds its part handed over stops renewing and records nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, select, update
from sqlmodel import Session, col

from models.states import ENDED_PART_STATUSES, PARTS, IllegalTransition, PartStatus, RunStatus
from models.tables import Connector, SyncPart, SyncRun, utcnow

log = logging.getLogger(__name__)

#: How often a running part renews its lease, and how old a lease may grow before the reaper (every minute)
#: hands the part over: a lost process's part runs again within two minutes.
HEARTBEAT_EVERY = timedelta(seconds=10)
PART_LEASE = timedelta(seconds=60)


@dataclass
class Claim:
    """The outcome of trying to claim a part: run it (``attempt``), or not (``reason``)."""

    attempt: int | None
    reason: str | None = None
    connector_name: str | None = None
    connector_id: int | None = None


def claim_part(engine: Engine, run_id: int, name: str, *, run_status: RunStatus = RunStatus.RUNNING,
               take_over_running: bool = True) -> Claim:
    """Mark a part running for this attempt. A redelivered part (its worker died) is taken over, unless
    ``take_over_running`` is off: a finalizer sent twice must not take a derived part from the other, which may
    be alive (a dead one's part is handed back to pending by the reaper, its lease run out).

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
        if part.status == PartStatus.RUNNING and not take_over_running:
            return Claim(None, "running elsewhere", connector_name, connector_id)
        attempt = part.attempt + 1  # read before the commit below expires ``part``
        current = PartStatus(part.status)
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.id) == part.id, col(SyncPart.attempt) == part.attempt, col(SyncPart.status) == current,
        ).values(status=PARTS.move(current, PartStatus.RUNNING), attempt=attempt, started_at=(now := utcnow()),
                 heartbeat_at=now, error=None)))
        session.commit()
        if result.rowcount != 1:
            return Claim(None, "claimed by another worker", connector_name, connector_id)
        return Claim(attempt, None, connector_name, connector_id)


def end_part(engine: Engine, run_id: int, name: str, attempt: int, *, status: PartStatus,
             counts: dict[str, int] | None = None, requests: int = 0, error: str | None = None) -> bool:
    """Record a part's end, if this attempt still owns it. ``IllegalTransition`` (and nothing written) for a
    status that is not an end (back to pending is the reaper's hand-over, never an attempt's end) or that a running
    part may not move to."""
    if PartStatus(status) not in ENDED_PART_STATUSES:
        raise IllegalTransition(f"{PARTS.name}: {PartStatus.RUNNING} -> {status} is not an end of a part")
    target = PARTS.move(PartStatus.RUNNING, PartStatus(status))
    with Session(engine) as session:
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.name) == name, col(SyncPart.attempt) == attempt,
            col(SyncPart.status) == PartStatus.RUNNING,
        ).values(status=target, finished_at=utcnow(), counts=counts or {}, requests=requests, error=error,
                 checkpoint=None)))
        session.commit()
        return result.rowcount == 1


def renew_lease(engine: Engine, run_id: int, name: str, attempt: int) -> bool:
    """Renew a running part's lease; False when this attempt no longer owns the part (it was handed over)."""
    with Session(engine) as session:
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.name) == name, col(SyncPart.attempt) == attempt,
            col(SyncPart.status) == PartStatus.RUNNING).values(heartbeat_at=utcnow())))
        session.commit()
        return result.rowcount == 1


class PartLease:
    """``with PartLease(engine, run_id, name, attempt):`` around a part's work: a daemon thread renews the lease
    every ``every`` seconds until the block ends. ``lost`` turns True when the part was handed over meanwhile. A
    renewal that fails (the database is down) is logged and tried again: the part goes on, and if the outage
    outlasts the lease the reaper hands the part over once the database is back."""

    def __init__(self, engine: Engine, run_id: int, name: str, attempt: int,
                 every: float = HEARTBEAT_EVERY.total_seconds()) -> None:
        self.engine, self.run_id, self.name, self.attempt, self.every = engine, run_id, name, attempt, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{run_id}-{name}", daemon=True)

    def __enter__(self) -> PartLease:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _renew(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not renew_lease(self.engine, self.run_id, self.name, self.attempt):
                    self.lost = True
                    log.warning("sync part handed over to another worker (its lease ran out); this attempt's "
                                "outcome will not be recorded", extra={"run_id": self.run_id, "part": self.name,
                                                                      "attempt": self.attempt})
                    return
            except Exception as exc:  # noqa: BLE001  (a lease that cannot be renewed now may be later)
                log.warning("could not renew a sync part's lease: %s", exc,
                            extra={"run_id": self.run_id, "part": self.name})
