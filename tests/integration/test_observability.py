"""Metrics and logs from a real worker: Prometheus exposition after a sync and a provisioning request, JSON log
lines that carry the task context, and the API key in neither."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY
from tests.support.e2e import new_connector, provision, sync_now
from tests.support.fleet import WorkerFleet
from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.fixture(scope="module")
def observed_fleet(redis_url, tmp_path_factory):
    directory = tmp_path_factory.mktemp("observed")
    fleet = WorkerFleet(directory, redis_url.rsplit("/", 1)[0] + "/6", f"sqlite:///{directory / 'jumpsync.db'}")
    fleet.metrics_port = free_port()
    fleet.extra_env = {"JUMPSYNC_METRICS_PORT": str(fleet.metrics_port), "JUMPSYNC_METRICS_ADDRESS": "127.0.0.1",
                       "JUMPSYNC_LOG_FORMAT": "json"}
    fleet.migrate()
    fleet.start_worker("obs", concurrency=2)
    yield fleet
    fleet.stop()


def scrape(port: int) -> dict[tuple, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert TEST_API_KEY not in text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_and_json_logs_after_a_sync_and_a_request(observed_fleet, simulator):
    from models.db import make_engine

    engine = make_engine(observed_fleet.database_url)
    sim = simulator(TenantSpec(seed=51, users=130, admins=6, groups=8, apps=5))
    name = new_connector(observed_fleet, sim)
    run = sync_now(observed_fleet, engine, name)
    assert run["status"] == "succeeded"
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    assert provision(observed_fleet, engine, name, "group.add-member", group=group["id"], user=user)["status"] == "succeeded"
    time.sleep(0.5)

    samples = scrape(observed_fleet.metrics_port)
    assert value(samples, "jumpsync_sync_runs_total", connector=name, status="succeeded") == 1
    assert value(samples, "jumpsync_sync_run_duration_seconds_count", connector=name, status="succeeded") == 1
    for part in ("user", "admin", "group", "app", "role", "admin_link", "app_via_group"):
        assert value(samples, "jumpsync_sync_part_duration_seconds_count", connector=name, part=part,
                     status="succeeded") == 1, part
    requests_made = sum(v for (n, labels), v in samples.items()
                        if n == "jumpsync_api_requests_total" and ("connector", name) in labels)
    assert requests_made == sum(p["requests"] for p in run["parts"]) + 1  # the sync's, and the provisioning POST
    assert value(samples, "jumpsync_api_requests_total", connector=name, method="GET", route="/api/systemusers",
                 status="200") == 2  # 130 users: two pages
    assert value(samples, "jumpsync_provisioning_requests_total", connector=name, action="group.add-member",
                 outcome="succeeded") == 1
    assert value(samples, "jumpsync_resources", connector=name, type="user") == len(dump["users"])
    assert value(samples, "jumpsync_grants", connector=name, type="group") == sum(len(g["members"])
                                                                                  for g in dump["groups"]) + 1
    assert value(samples, "jumpsync_last_successful_sync_timestamp_seconds", connector=name) > time.time() - 300
    assert value(samples, "jumpsync_database_up") == 1

    log_text = (observed_fleet.directory / "obs.log").read_text()
    assert TEST_API_KEY not in log_text
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    part_lines = [line for line in lines if line.get("task") == "jumpsync.sync.part" and line.get("connector") == name]
    assert part_lines and all("run_id" in line and "part" in line for line in part_lines)
    assert any(line.get("request_id") for line in lines if line.get("task") == "jumpsync.provision")


def test_health_passes_against_a_live_deployment_and_names_a_missing_worker(observed_fleet):
    import os
    import subprocess
    import sys

    from tests.support.constants import ROOT

    def health(*args):
        done = subprocess.run([sys.executable, "-m", "cli", "health", "--json", *args], env=observed_fleet.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout)

    code, result = health("--worker", f"obs@{os.uname().nodename}", "--min-workers", "1")
    assert code == 0 and result["ok"], result
    assert result["workers"]["workers"] == [f"obs@{os.uname().nodename}"]
    code, result = health("--worker", "nobody@nowhere")
    assert code == 1 and "worker nobody@nowhere did not answer" in result["workers"]["error"]
    assert result["broker"]["ok"] and result["database"]["ok"]


def _request_count(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM provisioning_requests")).scalar_one()


def test_flower_shows_tasks_behind_basic_auth_and_never_the_key(observed_fleet, simulator):
    import subprocess
    import sys

    from models.db import make_engine
    from tests.support.constants import ROOT
    from tests.support.servers import wait_for_port

    port = free_port()
    env = {**observed_fleet.env, "JUMPSYNC_FLOWER_BASIC_AUTH": "ops:s3cret-pass"}
    flower = subprocess.Popen([sys.executable, "-m", "cli", "flower", "--port", str(port), "--address",
                               "127.0.0.1"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        time.sleep(1)  # Flower subscribes to task events once it is up
        engine = make_engine(observed_fleet.database_url)
        sim = simulator(TenantSpec(seed=52, users=40, admins=3, groups=3, apps=2))
        name = new_connector(observed_fleet, sim)
        assert sync_now(observed_fleet, engine, name)["status"] == "succeeded"
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/tasks", timeout=10).status_code == 401
        deadline = time.monotonic() + 30
        while True:
            response = httpx.get(f"{base}/api/tasks", auth=("ops", "s3cret-pass"), timeout=10)
            assert response.status_code == 200
            tasks = response.json().values()
            parts = [t for t in tasks if t.get("name") == "jumpsync.sync.part" and name in (t.get("args") or "")]
            if len(parts) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {t["state"] for t in parts} == {"SUCCESS"} and len(parts) == 4
        assert all(name in t["args"] for t in parts)  # the connector shows in the arguments
        assert TEST_API_KEY not in response.text
        assert "jumpsync.sync.connector" in {t.get("name") for t in tasks}
        # The last part to end finalized the run itself: no finalizer went through the broker.
        assert "jumpsync.sync.finalize" not in {t.get("name") for t in tasks}
        assert sum("'run_status': 'succeeded'" in (t.get("result") or "") for t in parts) == 1

        # No task is started from Flower: every provisioning task (and a sync) refused on each endpoint that
        # starts one, even with a valid login; the request it carried never reaches a worker.
        from worker.names import TaskName

        user = next(u["_id"] for u in sim.dump()["users"])
        submit = {"kwargs": {"connector": name, "action": "user.suspend", "params": {"user": user},
                             "requested_by": "flower"}}
        requests_before = _request_count(engine)
        names = [t for t in TaskName if t.startswith("jumpsync.provision")] + [TaskName.SYNC_CONNECTOR]
        for task in names:
            for endpoint in ("async-apply", "send-task", "apply"):
                url = f"{base}/api/task/{endpoint}/{task}"
                assert httpx.post(url, json=submit, timeout=10).status_code == 401
                refused = httpx.post(url, json=submit, auth=("ops", "s3cret-pass"), timeout=10)
                assert refused.status_code == 403, (endpoint, task, refused.text)
                assert "starts no tasks" in refused.json()["error"]
        time.sleep(1)
        after = httpx.get(f"{base}/api/tasks", auth=("ops", "s3cret-pass"), timeout=10).json().values()
        assert not [t for t in after if str(t.get("name", "")).startswith("jumpsync.provision")]
        assert _request_count(engine) == requests_before
    finally:
        flower.terminate()
        flower.wait(timeout=30)


def test_a_worker_removes_the_metrics_directory_it_made_when_it_stops(redis_url, tmp_path):
    """Without PROMETHEUS_MULTIPROC_DIR, ``jumpsync worker`` makes one in the temporary directory: not left there."""
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    fleet = WorkerFleet(tmp_path, redis_url.rsplit("/", 1)[0] + "/7", f"sqlite:///{tmp_path / 'jumpsync.db'}")
    port = free_port()
    fleet.extra_env = {"JUMPSYNC_METRICS_PORT": str(port), "JUMPSYNC_METRICS_ADDRESS": "127.0.0.1",
                       "TMPDIR": str(own_tmp)}
    fleet.migrate()
    proc = fleet.start_worker("tidy", concurrency=1)
    try:
        assert len(list(own_tmp.glob("jumpsync-metrics-*"))) == 1
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    finally:
        fleet.stop()
    assert proc.returncode == 0
    assert not list(own_tmp.glob("jumpsync-metrics-*"))
