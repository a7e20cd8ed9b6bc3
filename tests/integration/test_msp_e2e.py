"""End to end: one MSP key, a multi-tenant simulator with three organisations, a real worker and beat on a real
Redis. Beat lists the organisations, each becomes a connector and syncs; organisations added, renamed and removed
in the simulator are followed without restarting anything; the key's budget is one across its organisations."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from models import queries
from simulator.cli import build_state
from simulator.faults import Faults
from simulator.server import SimulatorServer
from tests.support.constants import ROOT, TEST_API_KEY, TEST_KEY_ENV
from tests.support.e2e import provision, state
from tests.support.expected import assert_same, expected_state
from tests.support.fleet import WorkerFleet
from tests.support.runs import latest_run
from tests.support.simulators import SimulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.long]

#: Requests open at once for the MSP key, across its organisations: three syncs of four parts each, eight
#: requests per part, would reach 96 without the shared budget.
SHARED_MAX_IN_FLIGHT = 3


def msp_table(sim_url: str) -> str:
    return (f'[[msp]]\nname = "acme"\nbase_url = "{sim_url}"\napi_key_env = "{TEST_KEY_ENV}"\n'
            f'discover_interval = "10s"\nremove_after = "10s"\nexclude = ["*sandbox*"]\n'
            f'shared_max_in_flight = {SHARED_MAX_IN_FLIGHT}\n\n'
            '[msp.connector]\ninterval = "1h"\nevents = false\nmax_attempts = 3\nbackoff_base = 0.05\n\n')


def wait_for(condition, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def cli_json(fleet, *args: str):
    done = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], env=fleet.env, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def organisations(fleet) -> dict[str, dict]:
    """``jumpsync msp list --json``: org id -> its row."""
    (table,) = cli_json(fleet, "msp", "list")["msp"]
    return {org["org_id"]: org for org in table["organizations"]}


def synced(engine, name: str) -> bool:
    try:
        return getattr(latest_run(engine, name, finished=True), "status", None) == "succeeded"
    except queries.UnknownConnector:
        return False


@pytest.fixture(scope="module")
def msp_fleet(redis_url, tmp_path_factory):
    """A worker and beat of their own (their own Redis database, so the session's workers never take these
    tasks), a multi-tenant simulator with three organisations, and an [[msp]] table for its key. One for the
    module: the tests run in order, the second on what the first left."""
    tmp_path = tmp_path_factory.mktemp("msp")
    # 30 ms a request, so that the organisations' syncs overlap (beat sends all three at once; the worker runs eight
    # parts at a time) and a budget per organisation would show at the simulator
    state_ = build_state(api_key=TEST_API_KEY, seed=70, users=40, admins=4, groups=5, apps=4, orgs=3,
                         faults=Faults(latency_ms=30))
    server = SimulatorServer(state_).start()
    sim = SimulatorHandle(server, state_, TEST_API_KEY, next(iter(state_.orgs)))
    broker_url = redis_url.rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(broker_url).flushdb()  # no beat entries left by an earlier run
    fleet = WorkerFleet(tmp_path, broker_url, f"sqlite:///{tmp_path / 'jumpsync.db'}")
    # beat re-reads the settings only every 5 minutes: organisations that come and go within the test reach its
    # schedule because discovery tells it (worker.beat.announce_discovery)
    fleet.sync_settings["config_reload_interval"] = "5m"
    fleet.connectors["msp"] = msp_table(sim.url)
    fleet.write_config()
    fleet.migrate()
    worker = fleet.start_worker("msp", queues="sync,provisioning", concurrency=8)
    fleet.procs.append(subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=fleet.env, cwd=ROOT,
                                        stdout=open(tmp_path / "beat.log", "wb"), stderr=subprocess.STDOUT))
    yield fleet, sim, worker
    fleet.stop()
    server.stop()


def test_an_msp_keys_organisations_are_discovered_synced_and_followed(msp_fleet, tmp_path):
    from models.db import make_engine

    fleet, sim, worker = msp_fleet
    engine = make_engine(fleet.database_url)
    first = sim.orgs()
    listed = wait_for(lambda: len(found := organisations(fleet)) == 3 and found, "three organisations listed")
    names = {org_id: org["connector"] for org_id, org in listed.items()}
    assert len(set(names.values())) == 3 and all(name.startswith("acme-") for name in names.values())

    for org_id, name in names.items():
        wait_for(lambda name=name: synced(engine, name), f"no sync of {name} succeeded")
        tenant = sim.sim("GET", "/_sim/tenant", params={"org": org_id}).json()
        assert_same(state(engine, name), expected_state(tenant))
        assert first["names"][org_id]  # a display name the connector name came from
    assert sim.stats()["max_in_flight"] <= SHARED_MAX_IN_FLIGHT  # one budget for the key, not one per org

    # a request by connector name reaches the right organisation (x-org-id)
    org_id, name = next(iter(names.items()))
    user = sim.sim("GET", "/_sim/tenant", params={"org": org_id}).json()["users"][0]
    done = provision(fleet, engine, name, "user.suspend", user=user["_id"])
    assert done["status"] == "succeeded", done
    assert sim.state.orgs[org_id].users[user["_id"]]["suspended"] is True

    # organisations come and go; nothing is restarted
    added = sim.add_org(seed=90, users=20, admins=2, groups=3, apps=2, display_name="Hooli Labs")
    sandbox = sim.add_org(seed=91, users=5, admins=1, groups=1, apps=1, display_name="Hooli Sandbox")
    renamed_id, removed_id = list(names)[1], list(names)[2]
    sim.rename_org(renamed_id, "Renamed Industries")
    sim.remove_org(removed_id)

    wait_for(lambda: synced(engine, "acme-hooli-labs"), "the added organisation was not synced")
    tenant = sim.sim("GET", "/_sim/tenant", params={"org": added["org_id"]}).json()
    assert_same(state(engine, "acme-hooli-labs"), expected_state(tenant))
    rows = wait_for(lambda: (found := organisations(fleet))[removed_id]["state"] == "removed" and found,
                    "the removed organisation was not removed")
    assert rows[renamed_id]["connector"] == names[renamed_id]  # renamed, same connector
    assert rows[renamed_id]["display_name"] == "Renamed Industries"
    assert rows[sandbox["org_id"]]["state"] == "excluded"
    def status_after_the_removal() -> dict[str, dict] | None:
        entries = {entry["connector"]: entry for entry in cli_json(fleet, "status")}
        gone = entries[names[removed_id]]
        return entries if not gone["configured"] and gone["next_sync_at"] is None else None

    entries = wait_for(status_after_the_removal, "the removed organisation still configured or scheduled")
    for name in (names[renamed_id], names[next(iter(names))], "acme-hooli-labs"):
        assert entries[name]["configured"] and entries[name]["next_sync_at"], name  # beat still schedules them
        assert entries[name]["msp"] == "acme"
    assert rows[sandbox["org_id"]]["connector"] not in entries
    assert worker.poll() is None  # the same worker process did all of it


def test_a_failed_listing_changes_nothing_and_is_shown(msp_fleet):
    fleet, sim, _ = msp_fleet
    before = wait_for(lambda: len(found := organisations(fleet)) >= 3 and found, "organisations listed")
    sim.set_faults({"rules": [{"path": "/api/organizations", "status": 401}]})
    done = subprocess.run([sys.executable, "-m", "cli", "msp", "discover", "acme", "--wait", "--timeout", "60"],
                          env=fleet.env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "acme: listing failed: AuthError" in done.stdout
    assert TEST_API_KEY not in done.stdout + done.stderr
    after = organisations(fleet)
    assert {k: v["state"] for k, v in after.items()} == {k: v["state"] for k, v in before.items()}
    assert "syncing" in {row["state"] for row in after.values()}
