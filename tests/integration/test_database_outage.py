"""PostgreSQL down while a provisioning request is applied (issue 27, fault 9): JumpCloud applied the change,
the outcome cannot be written. The task is sent again with backoff (worker.retries) and the outcome is recorded
once the database is back, within the backoff, not after the request's lease; the change is made once."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from config.settings import load_settings
from models.db import make_engine
from models.migrate import upgrade
from provisioning import requests as prequests
from simulator.generator import TenantSpec
from tests.support.e2e import ALL_ACTIONS_POLICY, new_connector, sync_now
from tests.support.fleet import WorkerFleet
from tests.support.servers import PostgresServer, RedisServer
from worker.retries import BACKOFF_MAX

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.fixture
def outage(tmp_path_factory):
    """A private PostgreSQL (to stop and start), a private Redis (the session's fleet must not take these tasks),
    and a sync and a provisioning worker on them."""
    directory = tmp_path_factory.mktemp("outage")
    pg_directory = Path(tempfile.mkdtemp(prefix="jumpsync-pg-"))  # the postgres user must reach it
    server = PostgresServer(pg_directory).start()
    broker = RedisServer(directory / "redis").start()
    fleet = WorkerFleet(directory, broker.url, server.url)
    fleet.migrate()
    fleet.start_worker("w1", queues="sync")
    fleet.start_worker("p1", queues="provisioning", concurrency=None)
    engine = make_engine(server.url)
    upgrade(engine)
    yield server, fleet, engine
    engine.dispose()
    fleet.stop()
    broker.stop()
    server.stop()
    shutil.rmtree(pg_directory, ignore_errors=True)


def test_an_outcome_written_while_the_database_is_down_is_recorded_once_it_is_back(outage, simulator):
    server, fleet, engine = outage
    sim = simulator(TenantSpec(seed=53, users=60, admins=4, groups=6, apps=4))
    name = new_connector(fleet, sim, ALL_ACTIONS_POLICY)
    assert sync_now(fleet, engine, name)["status"] == "succeeded"
    group = sim.dump()["groups"][0]
    user = next(u["_id"] for u in sim.dump()["users"] if u["_id"] not in group["members"])
    sim.set_faults({"latency_ms": 3000})  # JumpCloud is slow: the database goes down meanwhile
    accepted = prequests.accept(engine, load_settings(fleet.config_path), connector=name, action="group.add-member",
                                params={"group": group["id"], "user": user}, requested_by="cli:tests")
    request_id = accepted.request["id"]
    fleet.send("jumpsync.provision", request_id, queue="provisioning")
    deadline = time.monotonic() + 30
    while prequests.get(engine, request_id)["status"] != "running":
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.05)
    engine.dispose()
    server.stop()  # the outage: JumpCloud applies the change, its outcome has nowhere to go
    time.sleep(5)
    sim.set_faults({"latency_ms": 0})
    server.resume()
    back = time.monotonic()
    while (current := prequests.get(engine, request_id))["status"] == "running":
        # The lease here is 10 minutes: only a retry records it this soon.
        assert time.monotonic() - back < BACKOFF_MAX * 2 + 30, f"not recorded after the outage: {current}"
        time.sleep(0.2)
    assert current["status"] == "succeeded", current
    members = next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert members.count(user) == 1
