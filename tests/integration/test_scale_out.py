"""Scale-out on one machine: two sync workers and one beat on real Redis and PostgreSQL, several connectors.

What a fleet of hosts must guarantee, shown with processes:
- beat sends one scheduled sync per connector, and it runs once (no double run, no skip);
- the parts of the syncs spread over both workers;
- a worker killed mid-sync (SIGKILL of its whole process group: main process and pool children, as when a host
  dies) loses nothing: its unacknowledged messages come back after ``sync.visibility_timeout``, the surviving
  worker takes the interrupted parts over, the run succeeds and the database equals the tenant again, with
  nothing wrongly deleted.

The test has its own fleet (its own PostgreSQL database and Redis database number), so it shares no state with
the session fleet of the other integration tests.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlmodel import Session

from config.settings import load_file_config, parse_duration
from models import queries
from models.db import make_engine
from models.tables import Connector, SyncRun
from simulator.generator import TenantSpec
from tests.support.constants import ROOT
from tests.support.databases import fresh_postgres_database
from tests.support.e2e import state
from tests.support.expected import assert_same, expected_state
from tests.support.fleet import WorkerFleet

pytestmark = [pytest.mark.integration, pytest.mark.long]

# Short limits so that a killed worker's messages come back within the test. The settings validate that
# visibility_timeout > part_time_limit + 60s and stale_run_after > visibility_timeout.
SYNC_SETTINGS = {"part_time_limit": "15s", "visibility_timeout": "76s", "stale_run_after": "10m"}
CONNECTORS = ("scale-a", "scale-b", "scale-c")
REDIS_DB = 7
WAIT = 180  # seconds: the bound of every wait below
FAST_MS, SLOW_MS = 150, 600  # simulator latency per request: the scheduled syncs, the sync that is interrupted

class ScaleOutFleet(WorkerFleet):
    """The fleet of conftest with short redelivery limits, and helpers to name and read its workers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sync_settings = dict(SYNC_SETTINGS)
        self.write_config()

    def node(self, name: str) -> str:
        return f"{name}@{os.uname().nodename}"

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return "\n".join(text[-lines:])


def logs(fleet: ScaleOutFleet, names: tuple[str, ...]) -> str:
    return "".join(f"\n--- tail of {name}.log ---\n{tail(fleet.log_path(name))}" for name in names)


def runs_of(engine, connector: str) -> list[dict]:
    with Session(engine) as session:
        rows = session.execute(select(SyncRun.id, SyncRun.status, SyncRun.trigger, SyncRun.task_id,
                                      SyncRun.finished_at, SyncRun.error)
                               .join(Connector).where(Connector.name == connector).order_by(SyncRun.id)).all()
    return [row._asdict() for row in rows]


def wait_for(condition, what: str, fleet: ScaleOutFleet, names: tuple[str, ...], timeout: float = WAIT):
    """Poll ``condition`` until it returns something truthy; fail with the worker logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s{logs(fleet, names)}")
        time.sleep(0.2)


def succeeded_parts(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if "Task jumpsync.sync.part[" in line and "succeeded" in line)


def active_parts(fleet: ScaleOutFleet, workers: tuple[str, ...], run_id: int) -> dict[str, list[str]]:
    """The sync parts of ``run_id`` each worker node is executing now, from ``celery inspect active``."""
    nodes = [fleet.node(name) for name in workers]
    replies = fleet.client.control.inspect(timeout=1.0, destination=nodes, limit=len(nodes)).active() or {}
    out: dict[str, list[str]] = {}
    for node, tasks in replies.items():
        for task in tasks:
            args = task.get("args")
            args = ast.literal_eval(args) if isinstance(args, str) else args
            if task.get("name") == "jumpsync.sync.part" and args and args[0] == run_id:
                out.setdefault(node, []).append(args[1])
    return out


@pytest.fixture
def scale_fleet(redis_url, postgres_server_url, tmp_path):
    broker_url = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis_client = redis.Redis.from_url(broker_url)
    redis_client.flushdb()  # no beat entries or messages left from an earlier run
    fleet = ScaleOutFleet(tmp_path, broker_url, fresh_postgres_database(postgres_server_url))
    extra: list[subprocess.Popen] = []
    fleet.extra_procs = extra
    try:
        yield fleet
    finally:
        for proc in extra:
            if proc.poll() is None:
                proc.terminate()
        fleet.stop()
        for proc in extra + fleet.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        fleet.client.close()
        redis_client.flushdb()
        redis_client.close()


def test_two_workers_one_beat_share_the_syncs_and_survive_a_killed_worker(scale_fleet, simulator):
    fleet = scale_fleet
    workers = ("w1", "w2")
    started = time.monotonic()
    sims = {}
    for index, name in enumerate(CONNECTORS):
        sim = simulator(TenantSpec(seed=300 + index, users=300, admins=10, groups=20, apps=10))
        sim.set_faults({"latency_ms": FAST_MS})
        fleet.add_connector(name, sim.url, 'max_in_flight = 2\n')
        sims[name] = sim
    fleet.migrate()
    procs = {name: fleet.start_worker(name, queues="sync", concurrency=2) for name in workers}
    # The workers run with the app's visibility timeout, taken from the [sync] table of the config file.
    conf = fleet.client.control.inspect(timeout=2.0, destination=[fleet.node("w1")]).conf() or {}
    visibility = int(parse_duration(load_file_config(fleet.config_path, required=True).sync.visibility_timeout)
                     .total_seconds())
    assert visibility == 76
    transport = conf.get(fleet.node("w1"), {}).get("broker_transport_options", {})
    assert transport.get("visibility_timeout") == visibility, conf
    assert transport.get("unacked_restore_throttle") == 1, conf  # timed-out messages are looked for every 10 s
    with open(fleet.directory / "beat.log", "wb") as beat_log:
        beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "-l", "INFO"],
                                env=fleet.env, cwd=ROOT, stdout=beat_log, stderr=subprocess.STDOUT)
    fleet.extra_procs.append(beat)
    engine = make_engine(fleet.database_url)
    names = (*workers, "beat")
    try:
        # 1. Beat's first trigger (a new connector is due at once; the interval is 1h): one run per connector.
        def scheduled_syncs_ended():
            runs = {name: runs_of(engine, name) for name in CONNECTORS}
            return runs if all(r and all(x["finished_at"] for x in r) for r in runs.values()) else None

        wait_for(scheduled_syncs_ended, "a scheduled sync of every connector", fleet, names)
        time.sleep(3)  # time for a doubled trigger (second send, redelivery) to show up
        for name in CONNECTORS:
            runs = runs_of(engine, name)
            assert [(r["trigger"], r["status"]) for r in runs] == [("schedule", "succeeded")], (name, runs)
            assert_same(state(engine, name), expected_state(sims[name].dump()))
        spread = {name: succeeded_parts(fleet.log_path(name)) for name in workers}
        assert all(spread.values()), f"the sync parts did not spread over both workers: {spread}{logs(fleet, names)}"
        assert sum(spread.values()) == 4 * len(CONNECTORS), spread  # each part ran once
        phase1 = time.monotonic() - started

        # 2. Kill a worker in the middle of a sync: changes in the tenant, so the run has rows to write and delete.
        name, sim = CONNECTORS[0], sims[CONNECTORS[0]]
        dump = sim.dump()
        group = next(g for g in dump["groups"] if g["members"])
        app = next(a for a in dump["apps"] if a["groups"])
        gone = [dump["users"][3]["_id"], dump["users"][4]["_id"]]
        for user_id in gone:
            sim.delete_user(user_id)
        sim.suspend_user(dump["users"][5]["_id"])
        added = sim.create_user("scale-late-joiner")["_id"]
        sim.group_member(group["id"], added, "add")
        sim.group_member(group["id"], group["members"][0], "remove")
        sim.app_binding(app["_id"], "user_group", app["groups"][0], "remove")
        sim.set_faults({"latency_ms": SLOW_MS})  # parts of several seconds, so that the kill lands mid-part
        task_id = fleet.send("jumpsync.sync.connector", name, trigger="manual").id
        run = wait_for(lambda: queries.run_by_task_id(engine, task_id), "the manual run opened", fleet, names, 30)

        # The victim is a worker running a long part (group or app: a request per group or app, several
        # seconds at this latency), so that the part is still running when the kill lands.
        def long_parts(active: dict[str, list[str]], worker: str) -> int:
            return len({"group", "app"} & set(active.get(fleet.node(worker), [])))

        def parts_on_a_worker():
            active = active_parts(fleet, workers, run.id)
            return active if any(long_parts(active, w) for w in workers) else None

        active = wait_for(parts_on_a_worker, "a long part of the manual run running on a worker", fleet, names, 30)
        victim = max(workers, key=lambda w: long_parts(active, w))
        survivor = next(w for w in workers if w != victim)
        os.killpg(procs[victim].pid, signal.SIGKILL)  # the host dies: main process and pool children at once
        procs[victim].wait(timeout=10)
        killed_at = time.monotonic()
        sim.set_faults({"latency_ms": FAST_MS})
        at_kill = {p.name: p for p in queries.run_by_task_id(engine, task_id).parts}
        # Parts that were running on the dead worker and had not ended: only a redelivery can end them now.
        interrupted = {p for p in active[fleet.node(victim)] if at_kill[p].status == "running"}
        assert interrupted, f"no part was interrupted by the kill: {active}, {at_kill}"

        def run_ended():
            current = queries.run_by_task_id(engine, task_id)
            return current if current.finished_at else None

        finished = wait_for(run_ended, f"the run of {name} after {victim} was killed "
                            f"(interrupted parts {sorted(interrupted)})", fleet, names)
        recovery = time.monotonic() - killed_at
        assert finished.status == "succeeded", finished
        parts = {p.name: p for p in finished.parts}
        assert {p.status for p in parts.values()} == {"succeeded"}, parts  # none left running or pending
        for part in interrupted:  # taken over by the redelivered message: a second attempt, which succeeded
            assert parts[part].attempt == 2, parts[part]
        assert recovery >= visibility - 15, f"redelivered after {recovery:.0f}s, before the visibility timeout"
        assert_same(state(engine, name), expected_state(sim.dump()))
        deleted = {(r.type, r.id) for r in queries.resources(engine, name) if r.deleted}
        assert deleted == {("user", user_id) for user_id in gone}, deleted  # no row wrongly deleted
        # The other connectors are untouched, and still nothing ran twice or was skipped.
        for other in CONNECTORS:
            if other != name:
                assert_same(state(engine, other), expected_state(sims[other].dump()))
            triggers = [(r["trigger"], r["status"]) for r in runs_of(engine, other)]
            expected = [("schedule", "succeeded")] + ([("manual", "succeeded")] if other == name else [])
            assert triggers == expected, (other, triggers)
        assert procs[survivor].poll() is None, f"the surviving worker died{logs(fleet, names)}"
        print(f"\nscale-out: phase 1 {phase1:.1f}s (parts per worker {spread}); killed {victim} running "
              f"{sorted(active[fleet.node(victim)])}, run ended {recovery:.1f}s later; "
              f"total {time.monotonic() - started:.1f}s")
    finally:
        engine.dispose()
