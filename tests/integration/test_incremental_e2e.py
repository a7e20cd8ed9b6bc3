"""End to end: beat sends the incremental refresh, a real worker on a real Redis reads the simulator's events over
HTTP and writes the changes; ``jumpsync status`` shows the refresh."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.tables import Connector, SyncRun
from simulator.generator import TenantSpec
from tests.conftest import ROOT
from tests.e2e import new_connector, state, sync_now
from tests.expected import assert_same, expected_state

pytestmark = pytest.mark.integration


def events_runs(engine, name: str) -> list[tuple]:
    with Session(engine) as session:
        return session.execute(select(SyncRun.id, SyncRun.status).join(Connector).where(
            Connector.name == name, SyncRun.trigger == "events")).all()


def test_beat_and_a_worker_apply_changes_from_events(fleet, fleet_engine, simulator, tmp_path):
    sim = simulator(TenantSpec(seed=31, users=150, admins=5, groups=8, apps=6))
    name = new_connector(fleet, sim, 'events_interval = "10s"\n')
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    dump = sim.dump()
    group = next(g for g in dump["groups"] if g["members"])
    app = next(a for a in dump["apps"] if a["groups"])
    sim.suspend_user(dump["users"][0]["_id"])
    sim.group_member(group["id"], group["members"][0], "remove")
    sim.app_binding(app["_id"], "user_group", app["groups"][0], "remove")
    sim.create_user("from-events")
    expected = expected_state(sim.dump())

    beat = subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=fleet.env, cwd=ROOT,
                            stdout=open(tmp_path / "beat.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while state(fleet_engine, name) != expected:
            assert time.monotonic() < deadline, "the changes did not reach the database within 60 s"
            time.sleep(0.5)
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert_same(state(fleet_engine, name), expected)
    runs = events_runs(fleet_engine, name)
    assert runs and all(status == "succeeded" for _, status in runs)

    status = json.loads(subprocess.run([sys.executable, "-m", "cli", "status", "--json"], env=fleet.env, cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    entry = next(e for e in status if e["connector"] == name)
    incremental = entry["incremental"]
    assert entry["events"] is True and entry["last_run"]["trigger"] == "manual"
    assert incremental["outcome"] in ("applied", "quiet") and incremental["cursor"] is not None
    assert incremental["run_id"] in {run_id for run_id, _ in runs} or incremental["outcome"] == "quiet"
    table = subprocess.run([sys.executable, "-m", "cli", "status", "-o", "tsv"], env=fleet.env, cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    header = table[0].split("\t")
    row = next(line.split("\t") for line in table if line.startswith(name + "\t"))
    assert row[header.index("events")].startswith(("applied ", "quiet "))
