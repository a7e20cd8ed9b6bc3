"""The API key never leaves the worker's memory, and the broker's password and Flower's login stay where they
are given: after a sync, a failed sync (401) and a provisioning request with a recognisable key, through a
password-protected broker and a Flower with a recognisable login, search for all three in everything an
attacker or a curious operator could read: the broker (every Redis key: queues, unacked messages, beat's
schedule), the database (every table), the logs, Flower's API (tasks, workers and their configuration, the
broker page), the Prometheus metrics, and the command lines of the worker and Flower (which `ps` shows to every
user)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import text

from models.db import make_engine
from simulator.generator import TenantSpec
from tests.support.constants import ROOT, TEST_KEY_ENV
from tests.support.e2e import ALL_ACTIONS_POLICY, new_connector, provision, sync_now
from tests.support.fleet import WorkerFleet
from tests.support.servers import free_port, redis_with_password, wait_for_port

pytestmark = pytest.mark.integration

KEY = "jc-SECRET-7f3a9c1e5b2d4f6a8c0e"
BROKER_PASSWORD = "broker-SECRET-3b5d7f9a1c2e4"
FLOWER_PASSWORD = "flower-SECRET-8e6c4a2f0d9b7"


@pytest.fixture
def protected_broker(tmp_path):
    """A Redis that wants a password (tests.support.servers.redis_with_password)."""
    with redis_with_password(BROKER_PASSWORD) as url:
        yield url


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


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


def test_the_secrets_are_nowhere_to_be_found(protected_broker, tmp_path_factory, simulator):
    directory = tmp_path_factory.mktemp("secrets")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(protected_broker.replace(f":{BROKER_PASSWORD}@", "")).ping()
    fleet = WorkerFleet(directory, protected_broker, f"sqlite:///{directory / 'jumpsync.db'}")
    metrics_port, flower_port = free_port(), free_port()
    fleet.extra_env = {TEST_KEY_ENV: KEY, "JUMPSYNC_METRICS_PORT": str(metrics_port),
                       "JUMPSYNC_METRICS_ADDRESS": "127.0.0.1", "JUMPSYNC_LOG_FORMAT": "json",
                       "JUMPSYNC_LOG_LEVEL": "DEBUG"}
    fleet.migrate()
    worker = fleet.start_worker("s1", queues="sync,provisioning", concurrency=2)
    flower = subprocess.Popen([sys.executable, "-m", "cli", "flower", "--port", str(flower_port),
                               "--address", "127.0.0.1"],
                              env={**fleet.env, "JUMPSYNC_FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}"}, cwd=ROOT,
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

        login = ("ops", FLOWER_PASSWORD)
        flower_url = f"http://127.0.0.1:{flower_port}"
        places = {
            "broker": redis_text(fleet.broker_url),
            "database": database_text(fleet.database_url),
            "worker log": (directory / "s1.log").read_text(),
            "flower log": (directory / "flower.log").read_text(),
            "flower api": httpx.get(f"{flower_url}/api/tasks", auth=login, timeout=10).text,
            "flower workers": httpx.get(f"{flower_url}/api/workers?refresh=1", auth=login, timeout=30).text,
            "flower broker page": httpx.get(f"{flower_url}/broker", auth=login, timeout=30).text,
            "metrics": httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text,
            "worker command line": command_line(worker.pid),
            "flower command line": command_line(flower.pid),
        }
        assert len(places["flower api"]) > 1000 and "jumpsync.sync.part" in places["flower api"]
        assert "s1@" in places["flower workers"] and "broker_url" in places["flower workers"]
        assert name in places["worker log"] and name in places["database"] and name in places["metrics"]
        for place, content in places.items():
            assert KEY not in content, f"the API key leaked into the {place}"
            assert KEY[3:19] not in content, f"part of the API key leaked into the {place}"
            assert BROKER_PASSWORD not in content, f"the broker's password leaked into the {place}"
            assert FLOWER_PASSWORD not in content, f"Flower's password leaked into the {place}"
    finally:
        flower.terminate()
        flower.wait(timeout=30)
        fleet.stop()
        engine.dispose()
