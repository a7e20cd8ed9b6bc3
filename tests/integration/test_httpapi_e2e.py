"""The HTTP API end to end: a ticketing system's token submits over real HTTP to ``jumpsync api`` (run without
a JumpCloud key), a real worker on a real Redis applies the request to the simulator, and the API's read-only
views answer what ``jumpsync access --json`` and ``jumpsync who-has --json`` print."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from auth.tokens import create_token
from simulator.generator import TenantSpec
from tests.support.api_server import ApiServer
from tests.support.constants import ROOT
from tests.support.e2e import new_connector, sync_now

pytestmark = pytest.mark.integration


@pytest.fixture
def api(fleet, fleet_engine, tmp_path):
    server = ApiServer(fleet.env, tmp_path / "api.log").start()
    yield server
    server.stop()


def wait_ended(client, request_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = client.get(f"/v1/requests/{request_id}").json()
        if request["status"] in ("succeeded", "failed", "rejected"):
            return request
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} did not end within {timeout}s")


def task_results(fleet) -> set[bytes]:
    """The task states kept in the result backend (the broker's Redis)."""
    import redis

    client = redis.Redis.from_url(fleet.env["JUMPSYNC_BROKER_URL"])
    try:
        return set(client.scan_iter(match="celery-task-meta-*", count=1000))
    finally:
        client.close()


def cli_json(fleet, *args: str):
    done = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], env=fleet.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_request_submitted_over_http_is_applied_and_the_views_agree_with_the_cli(fleet, fleet_engine, simulator,
                                                                                   api):
    sim = simulator(TenantSpec(seed=47, users=60, admins=4, groups=6, apps=4))
    name = new_connector(fleet, sim)
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    dump = sim.dump()
    names = [g["name"].casefold() for g in dump["groups"]]
    group = next(g for g in dump["groups"] if names.count(g["name"].casefold()) == 1)
    emails = [u["email"].casefold() for u in dump["users"]]
    user = next(u for u in dump["users"] if u["_id"] not in group["members"] and u.get("state") == "ACTIVATED"
                and emails.count(u["email"].casefold()) == 1)
    token, _ = create_token(fleet_engine, f"helpdesk-{name}", [f"provision:{name}:group.add-member", f"read:{name}"],
                            None, created_by="tests")
    client = api.client(token)
    results_before = task_results(fleet)

    accepted = client.post("/v1/requests", json={
        "connector": name, "action": "group.add-member", "params": {"group": group["name"], "user": user["email"]},
        "idempotency_key": f"TICKET-{name}", "on_behalf_of": "manager@example.com"})
    assert accepted.status_code == 202, accepted.text
    request = wait_ended(client, accepted.json()["id"])
    assert request["status"] == "succeeded", request
    assert request["requested_by"] == f"token:helpdesk-{name}" and request["dry_run"] is False
    assert user["_id"] in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    # Nobody waits on the apply task of an API request: the worker stores no state for it (only --wait asks).
    assert task_results(fleet) == results_before

    access = client.get(f"/v1/connectors/{name}/access/{user['email']}")
    assert access.status_code == 200
    assert access.json() == cli_json(fleet, "access", name, user["email"])
    assert any(e["id"] == group["id"] for e in access.json()["access"])
    holders = client.get(f"/v1/connectors/{name}/holders/group:{group['id']}")
    assert holders.json() == cli_json(fleet, "who-has", name, f"group:{group['id']}")
    assert any(h["principal"]["id"] == user["_id"] for h in holders.json()["holders"])
    (status,) = client.get("/v1/connectors").json()
    assert status["connector"] == name and status["last_run"]["status"] == "succeeded"
