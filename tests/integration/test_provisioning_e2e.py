"""Provisioning end to end: requests sent by task name to real workers on a real Redis, applied to the
simulator over HTTP; each test checks JumpCloud's side (the simulator) and the database."""

from __future__ import annotations

import itertools
import os
import signal
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session

from config.settings import load_settings
from models import queries
from models.read_records import StoredResource
from models.states import ENDED_REQUEST_STATUSES, RunStatus
from models.tables import ProvisioningRequest, utcnow
from provisioning import requests as prequests
from simulator.generator import TenantSpec
from tests.support.e2e import (
    ALL_ACTIONS_POLICY,
    find_request,
    new_connector,
    provision,
    release,
    state,
    sync_now,
    wait_request,
)
from tests.support.expected import assert_same, expected_state

pytestmark = pytest.mark.integration


def unique(items, key):
    """Items whose ``key`` value occurs once (so that a name resolves to exactly one)."""
    counts: dict = {}
    for item in items:
        counts[(item.get(key) or "").casefold()] = counts.get((item.get(key) or "").casefold(), 0) + 1
    return [i for i in items if i.get(key) and counts[i[key].casefold()] == 1]


def grant_live(engine, connector, **match) -> bool:
    return any(all(getattr(g, k) == v for k, v in match.items()) and not g.deleted
               for g in queries.grants(engine, connector))


def resource(engine, connector, rtype, rid) -> StoredResource:
    return next(r for r in queries.resources(engine, connector, rtype) if r.id == rid)


@pytest.fixture
def synced(fleet, fleet_engine, simulator):
    """A simulator, a connector allowing every action, and a first sync (so names resolve from the database)."""
    sim = simulator(TenantSpec(seed=31, users=150, admins=8, groups=10, apps=8))
    name = new_connector(fleet, sim, ALL_ACTIONS_POLICY)
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    return sim, name


def test_every_action_end_to_end_and_the_next_sync_agrees(fleet, fleet_engine, synced):
    sim, name = synced
    dump = sim.dump()
    group = next(g for g in unique(dump["groups"], "name") if g["members"])
    app = next(a for a in unique(dump["apps"], "displayLabel") if a["groups"])
    bound_group = app["groups"][0]
    outsider = next(u for u in unique(dump["users"], "email")
                    if u["_id"] not in group["members"] and u.get("state") == "ACTIVATED"
                    and not any(a.get("email", "").casefold() == u["email"].casefold() for a in dump["admins"]))

    def ok(action, **params):
        request = provision(fleet, fleet_engine, name, action, **params)
        assert request["status"] == "succeeded", request
        return request

    # Groups: by name and email, as a person types them.
    ok("group.add-member", group=group["name"].upper(), user=outsider["email"])
    assert outsider["_id"] in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert grant_live(fleet_engine, name, resource_id=group["id"], principal_id=outsider["_id"], via=None)
    for app_id in [a["_id"] for a in dump["apps"] if group["id"] in a["groups"]]:  # access through the group too
        assert grant_live(fleet_engine, name, resource_id=app_id, principal_id=outsider["_id"], via=group["id"])
    leaver = group["members"][0]
    ok("group.remove-member", group=group["id"], user=leaver)
    assert leaver not in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert not grant_live(fleet_engine, name, resource_id=group["id"], principal_id=leaver)

    # Applications: for a user and for a group.
    ok("app.grant", app=app["displayLabel"], user=outsider["username"])
    assert outsider["_id"] in next(a for a in sim.dump()["apps"] if a["_id"] == app["_id"])["users"]
    assert grant_live(fleet_engine, name, resource_id=app["_id"], principal_id=outsider["_id"], via=None)
    ok("app.revoke", app=app["_id"], user=outsider["_id"])
    assert not grant_live(fleet_engine, name, resource_id=app["_id"], principal_id=outsider["_id"], via=None)
    ok("app.revoke", app=app["_id"], group=bound_group)
    assert bound_group not in next(a for a in sim.dump()["apps"] if a["_id"] == app["_id"])["groups"]
    assert not grant_live(fleet_engine, name, resource_id=app["_id"], via=bound_group)
    ok("app.grant", app=app["_id"], group=bound_group)
    assert grant_live(fleet_engine, name, resource_id=app["_id"], principal_id=bound_group, via=None)

    # Roles.
    admin = next(a for a in unique(dump["admins"], "email") if (a.get("roleName") or "").casefold() != "help desk")
    ok("role.set", admin=admin["email"], role="help desk")
    assert next(a for a in sim.dump()["admins"] if a["_id"] == admin["_id"])["roleName"].casefold() == "help desk"
    assert grant_live(fleet_engine, name, resource_type="role", resource_id="help-desk", principal_id=admin["_id"])
    assert [g.resource_id for g in queries.grants(fleet_engine, name, include_deleted=False)
            if g.principal_id == admin["_id"]] == ["help-desk"]

    # Accounts: create (staged), activate, suspend, unsuspend, delete.
    created = ok("user.create", email="new.hire@example.org", username="new.hire", firstname="New",
                 lastname="Hire", department="Ops")
    user_id = created["result"]["user_id"]
    assert next(u for u in sim.dump()["users"] if u["_id"] == user_id)["state"] == "STAGED"
    assert resource(fleet_engine, name, "user", user_id).status == "staged"
    for action, sim_state, db_status in [("user.activate", "ACTIVATED", "active"),
                                         ("user.suspend", "SUSPENDED", "suspended"),
                                         ("user.unsuspend", "ACTIVATED", "active")]:
        ok(action, user="new.hire@example.org")
        assert next(u for u in sim.dump()["users"] if u["_id"] == user_id)["state"] == sim_state
        assert resource(fleet_engine, name, "user", user_id).status == db_status
    ok("user.delete", user="new.hire")
    assert user_id not in {u["_id"] for u in sim.dump()["users"]}
    assert resource(fleet_engine, name, "user", user_id).deleted is True

    # The next sync finds the database already right: it equals the tenant and writes no row.
    run = sync_now(fleet, fleet_engine, name)
    assert run["status"] == "succeeded", run
    assert_same(state(fleet_engine, name), expected_state(sim.dump()))
    written = {p["name"]: p["counts"].get("rows_written", 0) for p in run["parts"]}
    assert sum(written.values()) == 0, written


def test_repeats_have_one_effect(fleet, fleet_engine, synced):
    """The same idempotency key twice, the same message delivered twice, and an action whose state holds."""
    sim, name = synced
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    sim.reset_stats()
    key = uuid.uuid4().hex
    kwargs = dict(connector=name, action="group.add-member", params={"group": group["id"], "user": user},
                  idempotency_key=key)
    fleet.send("jumpsync.provision.submit", queue="provisioning", **kwargs)
    fleet.send("jumpsync.provision.submit", queue="provisioning", **kwargs)
    task_id = uuid.uuid4().hex  # one message, delivered twice: a client that re-sends it after a timeout
    other = {**kwargs, "idempotency_key": None, "params": {"group": group["id"], "user": user}}
    for _ in range(2):
        fleet.client.send_task("jumpsync.provision.submit", kwargs=other, queue="provisioning", task_id=task_id)
    release(fleet, fleet_engine, name, key)
    release(fleet, fleet_engine, name, f"celery-task:{task_id}")
    first = wait_request(fleet_engine, name, key)
    second = wait_request(fleet_engine, name, f"celery-task:{task_id}")
    assert first["status"] == second["status"] == "succeeded"
    time.sleep(1)  # let any duplicate finish
    same = [r for r in prequests.listing(fleet_engine, connector=name, limit=1000)
            if r["idempotency_key"] in (key, f"celery-task:{task_id}")]
    assert len(same) == 2  # one request per key, not four
    posts = sim.stats()["by_route"].get("POST /api/v2/usergroups/{id}/members", 0)
    assert posts == 2  # one each: the second request found the member already there (409 = done)
    assert {first["result"]["changed"], second["result"]["changed"]} == {True, False}


def test_a_worker_killed_mid_request_is_taken_over_after_its_lease_and_completes_once(fleet, fleet_engine, synced):
    """The provisioning worker (threads: the requests it runs die with it) is SIGKILLed while JumpCloud
    applies a request: a new worker takes the request over once its lease has run out (the relay sends it again),
    and the change is made once."""
    sim, name = synced
    dump = sim.dump()
    group = dump["groups"][1]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    sim.set_faults({"latency_ms": 2500})  # the write takes long enough to kill the worker during it
    key = uuid.uuid4().hex
    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=name, action="group.add-member",
               params={"group": group["id"], "user": user}, idempotency_key=key)
    release(fleet, fleet_engine, name, key)
    deadline = time.monotonic() + 30
    while (find_request(fleet_engine, name, key) or {}).get("status") != "running":
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.05)
    time.sleep(0.5)
    worker = fleet.procs[1]
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and everything in it, as a lost host
    worker.wait(timeout=30)
    sim.set_faults({"latency_ms": 0})
    fleet.procs[1] = fleet.start_worker("p1", queues="provisioning", concurrency=None)
    fleet.procs.pop()  # start_worker appended it too: it takes the dead one's place
    running = find_request(fleet_engine, name, key)
    assert running["status"] == "running"
    with Session(fleet_engine) as session:  # as if its lease (10 minutes here) ran out
        session.execute(update(ProvisioningRequest).where(ProvisioningRequest.id == running["id"])
                        .values(started_at=utcnow() - timedelta(minutes=11),
                                enqueued_at=utcnow() - timedelta(minutes=11)))
        session.commit()
    fleet.send("jumpsync.provision.relay", queue="provisioning")  # what beat sends every relay_interval
    done = wait_request(fleet_engine, name, key, timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2  # it ran again after the kill
    members = next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert members.count(user) == 1
    assert grant_live(fleet_engine, name, resource_id=group["id"], principal_id=user)


def test_requests_on_one_membership_apply_one_at_a_time_in_order(fleet, fleet_engine, synced):
    """The worker applies many requests at once, but never two on one account: an add and a remove of one
    membership, asked in turn, end as the last one asked, each starting after the one before it ended."""
    sim, name = synced
    dump = sim.dump()
    group = dump["groups"][2]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    others = [u["_id"] for u in dump["users"] if u["_id"] not in group["members"] and u["_id"] != user][:6]
    settings = load_settings(fleet.config_path)

    def submit(action: str, who: str) -> str:  # recorded as the API or the CLI records it, then sent
        accepted = prequests.accept(fleet_engine, settings, connector=name, action=action,
                                    params={"group": group["id"], "user": who}, requested_by="cli:tests")
        assert accepted.enqueue, accepted.request
        fleet.send("jumpsync.provision", accepted.request["id"], queue="provisioning")
        return accepted.request["id"]

    sim.set_faults({"latency_ms": 150})
    try:
        line, beside = [], []
        for turn in range(6):  # add, remove, add, ...: the last asked is a remove
            line.append(submit("group.add-member" if turn % 2 == 0 else "group.remove-member", user))
            beside.append(submit("group.add-member", others[turn]))  # other accounts: lines of their own
        done = [wait_id(fleet_engine, rid) for rid in line]
        besides = [wait_id(fleet_engine, rid) for rid in beside]
    finally:
        sim.set_faults({"latency_ms": 0})
    assert [r["status"] for r in done + besides] == ["succeeded"] * 12, done + besides
    for before, after in itertools.pairwise(done):
        assert after["started_at"] >= before["finished_at"], (before, after)
    assert user not in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert not grant_live(fleet_engine, name, resource_id=group["id"], principal_id=user)
    # The other accounts' requests ran beside these: some started while one on the line was running.
    assert any(before["started_at"] < other["started_at"] < before["finished_at"]
               for before in done for other in besides)


def wait_id(engine, request_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (current := prequests.get(engine, request_id))["status"] not in ENDED_REQUEST_STATUSES:
        assert time.monotonic() < deadline, f"request {request_id} did not end within {timeout}s: {current}"
        time.sleep(0.1)
    return current


def test_a_lost_enqueue_is_relayed(fleet, fleet_engine, synced):
    """Committed, then the process died before sending: the relay sends it."""
    sim, name = synced
    group = sim.dump()["groups"][2]
    user = next(u["_id"] for u in sim.dump()["users"] if u["_id"] not in group["members"])
    settings = load_settings(fleet.config_path)
    accepted = prequests.accept(fleet_engine, settings, connector=name, action="group.add-member",
                                params={"group": group["id"], "user": user}, idempotency_key="lost-enqueue")
    assert accepted.enqueue and accepted.request["status"] == "pending"
    with Session(fleet_engine) as session:  # as if the crash happened a while ago
        session.execute(update(ProvisioningRequest).where(ProvisioningRequest.id == accepted.request["id"])
                        .values(enqueued_at=utcnow() - timedelta(minutes=5)))
        session.commit()
    time.sleep(1)
    assert prequests.get(fleet_engine, accepted.request["id"])["status"] == "pending"  # nothing else sends it
    fleet.send("jumpsync.provision.relay", queue="provisioning")  # what beat runs every 30s
    done = wait_request(fleet_engine, name, "lost-enqueue")
    assert done["status"] == "succeeded"
    assert user in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]


def test_invalid_requests_are_recorded_with_their_reason(fleet, fleet_engine, synced, simulator):
    sim, name = synced
    dump = sim.dump()
    sim.sim("POST", "/_sim/applications", json={"name": "wiki", "displayLabel": "Twin Wiki"})
    sim.sim("POST", "/_sim/applications", json={"name": "wiki", "displayLabel": "twin wiki"})
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    user = dump["users"][0]["_id"]
    cases = [
        (dict(connector="nope", action="group.add-member", params={"group": "x", "user": "y"}),
         "rejected", "unknown connector 'nope'"),
        (dict(connector=name, action="group.add-member", params={"group": dump["groups"][0]["id"], "user": "ghost@example.org"}),
         "rejected", "unknown user 'ghost@example.org'"),
        (dict(connector=name, action="group.add-member", params={"group": "No Such Group", "user": user}),
         "rejected", "unknown group 'No Such Group'"),
        (dict(connector=name, action="app.grant", params={"app": "Twin Wiki", "user": user}),
         "rejected", "application 'Twin Wiki' is ambiguous: 2 match"),
        (dict(connector=name, action="group.add-member", params={"group": "Eng"}),
         "rejected", "group.add-member: user is required"),
        (dict(connector=name, action="role.set", params={"admin": dump["admins"][0]["_id"], "role": "Overlord"}),
         "rejected", "unknown role 'Overlord'"),
    ]
    for kwargs, status, message in cases:
        key = uuid.uuid4().hex
        fleet.send("jumpsync.provision.submit", queue="provisioning", idempotency_key=key, **kwargs)
        release(fleet, fleet_engine, kwargs["connector"], key)
        request = wait_request(fleet_engine, kwargs["connector"], key)
        assert request["status"] == status and message in request["last_error"], (kwargs, request)

    # Policy: a connector with the default policy refuses user.delete.
    strict = new_connector(fleet, sim)
    key = uuid.uuid4().hex
    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=strict, action="user.delete",
               params={"user": user}, idempotency_key=key)
    request = wait_request(fleet_engine, strict, key)
    assert request["status"] == "rejected" and "user.delete is not allowed" in request["last_error"]
    assert user in {u["_id"] for u in sim.dump()["users"]}

    # A malformed Celery message: positional arguments, and a wrong type. Recorded, not retried, worker fine.
    fleet.client.send_task("jumpsync.provision.submit", args=["acme", "x"], queue="provisioning")
    fleet.client.send_task("jumpsync.provision.submit", kwargs={"connector": name, "action": "user.suspend",
                                                                "params": "not an object"}, queue="provisioning")
    deadline = time.monotonic() + 30
    while True:
        malformed = [r for r in prequests.listing(fleet_engine, status="rejected", limit=1000)
                     if "malformed jumpsync.provision.submit message" in (r["last_error"] or "")]
        if len(malformed) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(malformed) >= 2
    assert provision(fleet, fleet_engine, name, "user.suspend", user=user)["status"] == "succeeded"


def test_provisioning_is_prompt_while_a_long_sync_runs(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=41, users=400, admins=5, groups=60, apps=30))
    name = new_connector(fleet, sim, "max_in_flight = 2\n")
    dump = sim.dump()
    sim.set_faults({"latency_ms": 150})  # a sync of some 20 seconds
    sync_task = fleet.send("jumpsync.sync.connector", name, trigger="manual")
    deadline = time.monotonic() + 30
    while getattr(queries.run_by_task_id(fleet_engine, sync_task.id), "status", None) != RunStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    started = time.monotonic()
    request = provision(fleet, fleet_engine, name, "group.add-member", group=group["id"], user=user)
    took = time.monotonic() - started
    assert request["status"] == "succeeded", request
    assert queries.run_by_task_id(fleet_engine, sync_task.id).finished_at is None, "the sync was not long enough"
    assert took < 10, f"provisioning waited {took:.1f}s behind the sync"
    sim.set_faults({"latency_ms": 0})
