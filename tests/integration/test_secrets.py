"""The API key never leaves the worker's memory: after a sync, a failed sync (401) and a provisioning request
with a recognisable key, search for it in everything an attacker or a curious operator could read: the broker
(every Redis key: queues, unacked messages, beat's schedule), the database (every table), the logs, Flower's
API and the Prometheus metrics."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
import redis
from sqlalchemy import text

from models.db import make_engine
from simulator.generator import TenantSpec
from tests.support.constants import ROOT, TEST_KEY_ENV
from tests.support.e2e import ALL_ACTIONS_POLICY, new_connector, provision, sync_now
from tests.support.fleet import WorkerFleet
from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.integration

KEY = "jc-SECRET-7f3a9c1e5b2d4f6a8c0e"


def redis_text(url: str) -> str:
    """Every key and value in the broker's database, as text."""
    client = redis.Redis.from_url(url)
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def database_text(url: str) -> str:
    engine = make_engine(url)
    out = []
    with engine.connect() as connection:
        for table in ("connectors", "resources", "grants", "sync_runs", "sync_parts", "provisioning_requests",
                      "deletion_approvals"):
            out.extend(repr(tuple(row)) for row in connection.execute(text(f"SELECT * FROM {table}")))
    engine.dispose()
    return "\n".join(out)


def test_the_key_is_nowhere_to_be_found(redis_url, tmp_path_factory, simulator):
    directory = tmp_path_factory.mktemp("secrets")
    fleet = WorkerFleet(directory, redis_url.rsplit("/", 1)[0] + "/9", f"sqlite:///{directory / 'jumpsync.db'}")
    metrics_port, flower_port = free_port(), free_port()
    fleet.extra_env = {TEST_KEY_ENV: KEY, "JUMPSYNC_METRICS_PORT": str(metrics_port),
                       "JUMPSYNC_METRICS_ADDRESS": "127.0.0.1", "JUMPSYNC_LOG_FORMAT": "json",
                       "JUMPSYNC_LOG_LEVEL": "DEBUG"}
    fleet.migrate()
    fleet.start_worker("s1", queues="sync,provisioning", concurrency=2)
    flower = subprocess.Popen([sys.executable, "-m", "cli", "flower", "--port", str(flower_port),
                               "--address", "127.0.0.1"],
                              env={**fleet.env, "JUMPSYNC_FLOWER_BASIC_AUTH": "ops:pw"}, cwd=ROOT,
                              stdout=open(directory / "flower.log", "wb"), stderr=subprocess.STDOUT)
    engine = make_engine(fleet.database_url)
    try:
        wait_for_port(flower_port)
        sim = simulator(TenantSpec(seed=71, users=50, admins=3, groups=4, apps=3))
        sim.state.api_key = KEY  # the simulator accepts the recognisable key
        name = new_connector(fleet, sim, ALL_ACTIONS_POLICY)
        assert sync_now(fleet, engine, name)["status"] == "succeeded"
        dump = sim.dump()
        group = dump["groups"][0]
        user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
        assert provision(fleet, engine, name, "group.add-member", group=group["id"], user=user)["status"] == "succeeded"
        sim.state.api_key = "another-key"  # the key is revoked: every request now answers 401
        failed = sync_now(fleet, engine, name)
        assert failed["status"] == "failed" and "401" in failed["error"] and name in failed["error"]
        rejected = provision(fleet, engine, name, "group.remove-member", group=group["id"], user=user)
        assert rejected["status"] == "failed" and "401" in rejected["last_error"]
        time.sleep(1)

        places = {
            "broker": redis_text(fleet.broker_url),
            "database": database_text(fleet.database_url),
            "worker log": (directory / "s1.log").read_text(),
            "flower log": (directory / "flower.log").read_text(),
            "flower api": httpx.get(f"http://127.0.0.1:{flower_port}/api/tasks", auth=("ops", "pw"), timeout=10).text,
            "metrics": httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text,
        }
        assert len(places["flower api"]) > 1000 and "jumpsync.sync.part" in places["flower api"]
        assert name in places["worker log"] and name in places["database"] and name in places["metrics"]
        for place, content in places.items():
            assert KEY not in content, f"the API key leaked into the {place}"
            assert KEY[3:19] not in content, f"part of the API key leaked into the {place}"
    finally:
        flower.terminate()
        flower.wait(timeout=30)
        fleet.stop()
        engine.dispose()
