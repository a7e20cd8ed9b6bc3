"""Approvals end to end: a request submitted by task name to the real workers waits for two approvers, a forged
apply message meanwhile changes nothing, the approvals release it, and the simulator sees the change once;
an expired one is ended by the beat task, on the worker."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from config.settings import load_settings
from models.tables import ProvisioningRequest, utcnow
from provisioning import approvals
from simulator.generator import TenantSpec
from tests.support.e2e import find_request, new_connector, sync_now, wait_request, wait_status

pytestmark = pytest.mark.integration


def _policy(pattern: str) -> str:
    return ('[connectors.provisioning]\nallowed_actions = ["group.add-member"]\n\n'
            f'[[connectors.provisioning.approval]]\ntargets = [{json.dumps(pattern)}]\napprovers = 2\n')


def _membership_posts(sim) -> int:
    return sum(count for route, count in sim.stats()["by_route"].items()
               if route.startswith("POST") and "members" in route)


def test_an_approved_request_is_applied_once_and_a_forged_apply_does_nothing(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=47, users=40, admins=3, groups=6, apps=3))
    group = sim.dump()["groups"][1]
    user = next(u["_id"] for u in sim.dump()["users"] if u["_id"] not in group["members"])
    name = new_connector(fleet, sim, _policy(group["name"].upper()))  # a glob, matched case-insensitively
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"
    sim.reset_stats()

    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=name, action="group.add-member",
               params={"group": group["id"], "user": user}, idempotency_key="approve-me", requested_by="tests")
    waiting = wait_status(fleet_engine, name, "approve-me", "awaiting_approval")  # by id: its name matched
    fleet.send("jumpsync.provision", waiting["id"], queue="provisioning")  # an apply message, straight to the broker
    time.sleep(2)
    assert find_request(fleet_engine, name, "approve-me")["status"] == "awaiting_approval"
    assert _membership_posts(sim) == 0

    settings = load_settings(fleet.config_path)
    with pytest.raises(approvals.SelfApproval):
        approvals.approve(fleet_engine, settings, waiting["id"], "broker:tests")
    start = threading.Barrier(2)
    released: list[dict] = []

    def approve(who: str) -> None:
        start.wait()
        released.append(approvals.approve(fleet_engine, settings, waiting["id"], who))

    threads = [threading.Thread(target=approve, args=(who,)) for who in ("token:alice", "cli:bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    pending = [r for r in released if r["status"] == "pending"]
    assert len(released) == 2 and len(pending) == 1
    for _ in range(3):  # the releasing approver's message, a duplicate, and a relayed one: one effect
        fleet.send("jumpsync.provision", waiting["id"], queue="provisioning")
    done = wait_request(fleet_engine, name, "approve-me")
    assert done["status"] == "succeeded", done
    time.sleep(1)
    assert user in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    assert _membership_posts(sim) == 1
    assert [d["decided_by"] for d in approvals.detail(fleet_engine, done["id"])["decisions"]] in (
        ["token:alice", "cli:bob"], ["cli:bob", "token:alice"])


def test_the_expire_task_ends_unapproved_requests(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=48, users=20, admins=2, groups=4, apps=2))
    group = sim.dump()["groups"][0]
    name = new_connector(fleet, sim, _policy("*"))
    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=name, action="group.add-member",
               params={"group": group["name"], "user": sim.dump()["users"][0]["email"]},
               idempotency_key="too-late", requested_by="tests")
    waiting = wait_status(fleet_engine, name, "too-late", "awaiting_approval")
    with Session(fleet_engine) as session:  # as if 72 hours went by
        session.execute(update(ProvisioningRequest).where(col(ProvisioningRequest.id) == waiting["id"])
                        .values(approval_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    fleet.send("jumpsync.provision.expire", queue="provisioning")  # what beat runs every minute
    expired = wait_request(fleet_engine, name, "too-late")
    assert expired["status"] == "expired" and "not approved in time" in expired["last_error"]
