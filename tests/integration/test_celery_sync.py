"""End to end: a real Celery worker on a real Redis broker syncs the simulator (over HTTP) into the database.

Tasks are sent by name from a plain Celery client, as any other service would. Each test has its own
connector (added to the fleet's config file, which the worker re-reads) and its own simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from models import queries
from models.db import make_engine
from models.migrate import upgrade
from simulator.generator import TenantSpec
from tests.support.constants import ROOT
from tests.support.e2e import new_connector, provision, state, sync_now, wait_run
from tests.support.expected import assert_same, expected_state
from tests.support.renderings import live, served

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_worker_syncs_the_tenant_then_every_change(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=11, users=300, admins=10, groups=15, apps=10))
    name = new_connector(fleet, sim)
    run = sync_now(fleet, fleet_engine, name)
    assert run["status"] == "succeeded", run
    assert {p["name"] for p in run["parts"]} == {"user", "admin", "group", "app", "role", "admin_link",
                                                  "app_via_group"}
    assert_same(state(fleet_engine, name), expected_state(sim.dump()))

    dump = sim.dump()
    group = next(g for g in dump["groups"] if g["members"])
    app = next(a for a in dump["apps"] if a["groups"])
    sim.delete_user(dump["users"][5]["_id"])
    sim.suspend_user(dump["users"][6]["_id"])
    added = sim.create_user("late-joiner")["_id"]
    sim.group_member(group["id"], added, "add")
    sim.group_member(group["id"], group["members"][0], "remove")
    sim.app_binding(app["_id"], "user_group", app["groups"][0], "remove")
    run = sync_now(fleet, fleet_engine, name)
    assert run["status"] == "succeeded", run
    assert_same(state(fleet_engine, name), expected_state(sim.dump()))
    deleted = {(r.type, r.id) for r in queries.resources(fleet_engine, name) if r.deleted}
    assert ("user", dump["users"][5]["_id"]) in deleted


def wait_rendered(engine, name: str, timeout: float = 60) -> bytes:
    """The stored export of the connector once the worker has rendered it for the current data."""
    deadline = time.monotonic() + timeout
    while (found := served(engine, "export.csv", name)) is None:
        assert time.monotonic() < deadline, f"no current rendering of {name} within {timeout}s"
        time.sleep(0.2)
    return found


def rendering_status(fleet, name: str) -> dict:
    """The connector's ``access_rendering`` in ``jumpsync status --json``."""
    status = json.loads(subprocess.run([sys.executable, "-m", "cli", "status", "--json"], env=fleet.env,
                                       cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    return next(e for e in status if e["connector"] == name)["access_rendering"]


def test_worker_renders_the_report_and_export_after_a_sync_and_after_provisioning(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=12, users=150, admins=5, groups=8, apps=6))
    name = new_connector(fleet, sim)
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    assert wait_rendered(fleet_engine, name) == live(fleet_engine, "export.csv", name)  # the run's end asked
    shown = rendering_status(fleet, name)
    assert shown["current"] is True and shown["export_rows"] == live(fleet_engine, "export.csv", name).count(b"\n") - 1
    assert served(fleet_engine, "report.json", name) == live(fleet_engine, "report.json", name)

    dump = sim.dump()
    group = dump["groups"][0]
    newcomer = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])

    def membership(export: bytes) -> list[str]:
        return [line for line in export.decode().splitlines() if f"group,{group['id']}," in line and newcomer in line]

    assert membership(live(fleet_engine, "export.csv", name)) == []
    request = provision(fleet, fleet_engine, name, "group.add-member", group=group["id"], user=newcomer)
    assert request["status"] == "succeeded", request
    assert served(fleet_engine, "export.csv", name) is None  # stale from the write-through on
    assert rendering_status(fleet, name)["current"] is False
    # As beat sends it, every refresh_interval: a change outside a full sync waits for render_interval (the
    # fleet's is 10 s) after the last rendering, then the next refresh renders it.
    deadline = time.monotonic() + 60
    while served(fleet_engine, "export.csv", name) is None:
        assert time.monotonic() < deadline, "no rendering after the write-through"
        fleet.send("jumpsync.access.refresh")
        time.sleep(2)
    export = wait_rendered(fleet_engine, name)
    assert export == live(fleet_engine, "export.csv", name) and len(membership(export)) == 1


def test_failed_part_deletes_nothing_and_run_is_partial(fleet, fleet_engine, simulator):
    sim = simulator()
    name = new_connector(fleet, sim)
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    groups_before = {r.id for r in queries.resources(fleet_engine, name, "group", include_deleted=False)}
    sim.api("DELETE", f"/api/v2/usergroups/{sim.dump()['groups'][0]['id']}")
    sim.set_faults({"rules": [{"path": "^/api/v2/usergroups$", "status": 500}]})
    run = sync_now(fleet, fleet_engine, name)
    assert run["status"] == "partial"
    parts = {p["name"]: p for p in run["parts"]}
    assert parts["group"]["status"] == "failed" and "500" in parts["group"]["error"]
    assert parts["user"]["status"] == "succeeded" and parts["app_via_group"]["status"] == "skipped"
    assert {r.id for r in queries.resources(fleet_engine, name, "group", include_deleted=False)} == groups_before


def test_concurrent_trigger_is_skipped(fleet, fleet_engine, simulator):
    sim = simulator()
    sim.set_faults({"latency_ms": 400})  # a sync of several seconds
    name = new_connector(fleet, sim)
    first = fleet.send("jumpsync.sync.connector", name, trigger="manual")
    deadline = time.monotonic() + 30
    while getattr(queries.run_by_task_id(fleet_engine, first.id), "status", None) != "running":
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.05)
    second = fleet.send("jumpsync.sync.connector", name, trigger="manual")
    skipped = wait_run(fleet_engine, second.id)
    assert skipped["status"] == "skipped" and "still active" in skipped["error"]
    assert wait_run(fleet_engine, first.id)["status"] == "succeeded"


def test_unknown_connector_fails_the_task_cleanly(fleet, fleet_engine, simulator):
    sim = simulator()
    name = new_connector(fleet, sim)  # the worker must still be healthy after a bad message
    fleet.send("jumpsync.sync.connector", "no-such-connector", trigger="manual")
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"


def test_beat_schedules_each_connector_once_even_with_two_beats(fleet, fleet_engine, simulator, tmp_path):
    """Two beat processes: one holds the lock and sends; a connector added to the config is picked up."""
    sim = simulator()
    name = new_connector(fleet, sim)
    beats = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "-l", "INFO"],
                              env=fleet.env, cwd=ROOT, stdout=open(tmp_path / f"beat{i}.log", "wb"),
                              stderr=subprocess.STDOUT) for i in range(2)]
    try:
        deadline = time.monotonic() + 60
        late = None
        while time.monotonic() < deadline:
            runs = scheduled_runs(fleet_engine, name)
            if runs and late is None:
                late = new_connector(fleet, sim)  # added while beat runs: no restart
            if late and scheduled_runs(fleet_engine, late):
                break
            time.sleep(0.5)
        assert late is not None and scheduled_runs(fleet_engine, late), "the added connector was not scheduled"
        time.sleep(3)  # time for a second beat to (wrongly) send too
        for connector in (name, late):
            runs = scheduled_runs(fleet_engine, connector)
            assert len(runs) == 1, runs  # one scheduled trigger per connector: not doubled, not skipped
        # Removing a connector from the file removes its schedule, again without a restart.
        del fleet.connectors[late]
        fleet.write_config()
        beat_key = f"jumpsync:beat:sync:{late}".encode()
        redis_client = redis.Redis.from_url(fleet.broker_url)
        deadline = time.monotonic() + 30
        while redis_client.exists(beat_key):
            assert time.monotonic() < deadline, "the removed connector is still scheduled"
            time.sleep(0.5)
        assert redis_client.exists(f"jumpsync:beat:sync:{name}".encode())
        assert redis_client.exists(b"jumpsync:beat:provisioning-relay")  # the relay runs on the same beat
        status = json.loads(subprocess.run([sys.executable, "-m", "cli", "status", "--json"], env=fleet.env,
                                           cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        entry = next(e for e in status if e["connector"] == name)
        assert entry["next_sync_at"] and entry["last_run"]["trigger"] == "schedule"  # an hour after the first
    finally:
        for beat in beats:
            beat.terminate()
            beat.wait(timeout=30)


def scheduled_runs(engine, connector: str) -> list[tuple]:
    from sqlalchemy import select
    from sqlmodel import Session

    from models.tables import Connector, SyncRun

    with Session(engine) as session:
        return session.execute(select(SyncRun.id, SyncRun.status).join(Connector).where(
            Connector.name == connector, SyncRun.trigger == "schedule")).all()


@pytest.fixture(scope="module")
def pg_fleet(redis_url, postgres_server_url, tmp_path_factory):
    """A second worker whose database is PostgreSQL, on its own Redis database number."""
    from tests.support.databases import fresh_postgres_database
    from tests.support.fleet import WorkerFleet

    directory = tmp_path_factory.mktemp("pg-fleet")
    fleet = WorkerFleet(directory, redis_url.rsplit("/", 1)[0] + "/5", fresh_postgres_database(postgres_server_url))
    fleet.migrate()
    fleet.start_worker("pg")
    yield fleet
    fleet.stop()


def test_worker_on_postgresql_syncs_the_tenant(pg_fleet, simulator):
    engine = make_engine(pg_fleet.database_url)
    upgrade(engine)
    try:
        sim = simulator(TenantSpec(seed=21, users=400, admins=12, groups=20, apps=12))
        name = new_connector(pg_fleet, sim)
        run = sync_now(pg_fleet, engine, name)
        assert run["status"] == "succeeded", run
        assert_same(state(engine, name), expected_state(sim.dump()))
        assert wait_rendered(engine, name) == live(engine, "export.csv", name)
        sim.delete_user(sim.dump()["users"][0]["_id"])
        assert sync_now(pg_fleet, engine, name)["status"] == "succeeded"
        assert_same(state(engine, name), expected_state(sim.dump()))
        # A provisioning request on PostgreSQL: applied, written through, and the next sync agrees.
        dump = sim.dump()
        group = next(g for g in dump["groups"] if g["members"])
        request = provision(pg_fleet, engine, name, "group.remove-member", group=group["id"], user=group["members"][0])
        assert request["status"] == "succeeded", request
        run = sync_now(pg_fleet, engine, name)
        assert sum(p["counts"].get("rows_written", 0) for p in run["parts"]) == 0
        assert_same(state(engine, name), expected_state(sim.dump()))
    finally:
        engine.dispose()
