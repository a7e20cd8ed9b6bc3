"""A sync worker host lost mid-run (issue 27, fault 2): the real worker is SIGKILLed while its parts run; their
messages wait with the broker for its visibility timeout (70 minutes), but their leases run out and the reaper
hands them over to the next worker: the run ends, and the database equals the tenant. The user part, which had
saved a checkpoint, goes on from it (fault 3) instead of listing its users again."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session

from models.queries import UnknownConnector
from models.states import PartStatus
from models.tables import SyncPart, SyncRun, utcnow
from pipeline import checkpoint, reaper
from pipeline.claims import PART_LEASE
from simulator.generator import TenantSpec
from tests.support.e2e import new_connector, state, wait_run
from tests.support.expected import assert_same, expected_state
from tests.support.runs import latest_run

pytestmark = pytest.mark.integration


def test_parts_of_a_lost_worker_are_handed_over_when_their_lease_runs_out(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=47, users=2000, admins=6, groups=12, apps=8))
    name = new_connector(fleet, sim, "max_in_flight = 1")  # one page at a time: the user part runs for a while
    sim.set_latency(700)  # slow enough that the parts are running when the worker goes
    task = fleet.send("jumpsync.sync.connector", name, trigger="manual")
    deadline = time.monotonic() + 90
    while not _checkpointed(fleet_engine, name, "user"):
        assert time.monotonic() < deadline, "the user part saved no checkpoint"
        time.sleep(0.2)
    worker = fleet.procs[0]
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, as a host that is gone
    worker.wait(timeout=30)
    sim.set_latency(0)
    fleet.procs[0] = fleet.start_worker("w1", queues="sync")
    fleet.procs.pop()  # start_worker appended it too: it takes the dead one's place
    running = [part.name for part in _run(fleet_engine, name) if part.status == PartStatus.RUNNING]
    assert running, "the kill left no part running"
    with Session(fleet_engine) as session:  # as if a minute and a half passed: no lease renewed since the kill
        session.execute(update(SyncPart).where(SyncPart.status == PartStatus.RUNNING).values(
            heartbeat_at=utcnow() - PART_LEASE - timedelta(seconds=30)))
        session.commit()
    fleet.send("jumpsync.sync.reap")  # what beat sends every minute
    deadline = time.monotonic() + 60
    while any(p.status in (PartStatus.RUNNING, PartStatus.PENDING) for p in _run(fleet_engine, name)
              if p.name in running):
        assert time.monotonic() < deadline, f"the parts running at the kill were not handed over: {running}"
        time.sleep(0.1)
    # Parts the dead worker had taken but not started wait, pending, for the run to go quiet (their messages
    # are with the broker too): the next reaper ticks send them again. As if a minute had passed:
    backdate(fleet_engine, name, reaper.LOST_AFTER + timedelta(seconds=30))
    fleet.send("jumpsync.sync.reap")
    run = wait_run(fleet_engine, task.id, timeout=120)
    assert run["status"] == "succeeded", run
    handed = [p for p in run["parts"] if p["name"] in running]
    assert handed and all(p["attempt"] >= 2 for p in handed), handed
    user = next(p for p in run["parts"] if p["name"] == "user")
    assert user["counts"].get("pages_resumed", 0) >= 1, user  # it did not list its written pages again
    assert_same(expected_state(sim.dump()), state(fleet_engine, name))


def backdate(engine, name: str, by: timedelta) -> None:
    """The run's start and its parts' starts and ends ``by`` ago: nothing of it heard since."""
    run = latest_run(engine, name)
    past = utcnow() - by
    with Session(engine) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run.id).values(started_at=past))
        for column in ("started_at", "finished_at"):
            session.execute(update(SyncPart).where(SyncPart.run_id == run.id, getattr(SyncPart, column).is_not(None))
                            .values({column: past}))
        session.commit()


def _checkpointed(engine, name: str, part: str) -> bool:
    try:
        run = latest_run(engine, name)
    except UnknownConnector:
        return False
    return run is not None and checkpoint.load(engine, run.id, part) is not None


def _run(engine, name: str):
    try:
        run = latest_run(engine, name)
    except UnknownConnector:  # the run is not open yet
        return None
    return run.parts if run else None
