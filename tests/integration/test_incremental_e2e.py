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

from models import queries
from models.tables import Connector, SyncRun
from simulator.generator import TenantSpec
from tests.support.constants import ROOT
from tests.support.e2e import new_connector, state, sync_now
from tests.support.expected import assert_same, expected_state
from tests.support.runs import latest_run

pytestmark = pytest.mark.integration


def events_runs(engine, name: str) -> list[tuple]:
    with Session(engine) as session:
        return session.execute(select(SyncRun.id, SyncRun.status).join(Connector).where(
            Connector.name == name, SyncRun.trigger == "events")).all()


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def test_beat_and_a_worker_apply_changes_from_events(fleet, fleet_engine, simulator, tmp_path):
    """Beat sends the first full sync (a new connector is due at once; the next is an hour away), then a refresh
    every 10 s: the changes made after that sync can only come from the events."""
    sim = simulator(TenantSpec(seed=31, users=150, admins=5, groups=8, apps=6))
    name = new_connector(fleet, sim, 'events_interval = "10s"\n')
    beat = subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=fleet.env, cwd=ROOT,
                            stdout=open(tmp_path / "beat.log", "wb"), stderr=subprocess.STDOUT)
    try:
        def synced() -> bool:
            try:
                return getattr(latest_run(fleet_engine, name, finished=True), "status", None) == "succeeded"
            except queries.UnknownConnector:  # beat has not triggered it yet
                return False

        wait_for(synced, "no scheduled full sync succeeded")
        dump = sim.dump()
        group = next(g for g in dump["groups"] if g["members"])
        app = next(a for a in dump["apps"] if a["groups"])
        sim.suspend_user(dump["users"][0]["_id"])
        sim.group_member(group["id"], group["members"][0], "remove")
        sim.app_binding(app["_id"], "user_group", app["groups"][0], "remove")
        sim.create_user("from-events")
        expected = expected_state(sim.dump())
        wait_for(lambda: state(fleet_engine, name) == expected, "the changes did not reach the database")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert_same(state(fleet_engine, name), expected)
    runs = events_runs(fleet_engine, name)
    assert runs and all(status == "succeeded" for _, status in runs)
    assert [run.trigger for run in [latest_run(fleet_engine, name)]] == ["schedule"]  # still the first

    status = json.loads(subprocess.run([sys.executable, "-m", "cli", "status", "--json"], env=fleet.env, cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    entry = next(e for e in status if e["connector"] == name)
    incremental = entry["incremental"]
    assert entry["events"] is True and entry["last_run"]["trigger"] == "schedule"
    assert incremental["outcome"] in ("applied", "quiet") and incremental["cursor"] is not None
    assert incremental["run_id"] in {run_id for run_id, _ in runs} or incremental["outcome"] == "quiet"
    table = subprocess.run([sys.executable, "-m", "cli", "status", "-o", "tsv"], env=fleet.env, cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    header = table[0].split("\t")
    row = next(line.split("\t") for line in table if line.startswith(name + "\t"))
    assert row[header.index("events")].startswith(("applied ", "quiet "))


def test_sync_events_wait_refreshes_now_and_says_what_it_did(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=32, users=60, admins=3, groups=4, apps=3))
    name = new_connector(fleet, sim)
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    sim.suspend_user(sim.dump()["users"][0]["_id"])

    def refresh(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", "sync", name, "--events", "--wait", "--timeout", "60",
                               *extra], env=fleet.env, cwd=ROOT, capture_output=True, text=True)

    done = refresh("--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["outcome"], record["requests"], record["reads"]) == ("applied", 2, 1)
    assert_same(state(fleet_engine, name), expected_state(sim.dump()))
    quiet = refresh()
    assert quiet.returncode == 0 and f"{name}: refresh quiet — 1 request, 0 new events" in quiet.stdout

    fleet.add_connector(name, sim.url, "events = false\n")  # the same connector with its events turned off
    off = refresh()
    assert off.returncode == 2 and "events = false" in off.stderr
