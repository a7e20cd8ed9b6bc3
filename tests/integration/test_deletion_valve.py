"""The deletion safety valve: a sync that would delete too much holds it, deletes nothing, says why, and goes
ahead once approved (SQLite and PostgreSQL; simulator over HTTP)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from models import queries
from pipeline.valve import Deletion, approve, hold_reason
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.expected import actual_state, assert_same, expected_state


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


@pytest.mark.parametrize("deleting, live, held", [(5, 10, False), (10, 40, True), (10, 50, False), (9, 9, False),
                                                  (0, 0, False), (30, 30, True)])
def test_hold_reason_thresholds(deleting, live, held):
    reason = hold_reason([Deletion("user resources", deleting, live)], max_share=0.2, min_count=10)
    assert (reason is not None) == held
    if held:
        assert f"{deleting} of {live} live user resources" in reason


def live_ids(engine, rtype):
    return {r.id for r in queries.resources(engine, NAME, rtype, include_deleted=False)}


def test_mass_deletion_is_held_until_approved(engine, db_url, simulator):
    sim = simulator(TenantSpec(seed=61, users=100, admins=4, groups=10, apps=5))
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    users_before = live_ids(engine, "user")
    members_before = {(g.resource_id, g.principal_id) for g in queries.grants(engine, NAME, False)
                      if g.resource_type == "group"}
    gone = [u["_id"] for u in sim.dump()["users"][:40]]  # 40% of the users vanish at once
    for user_id in gone:
        sim.delete_user(user_id)

    held = run_sync(settings, engine)
    assert held.status == "partial" and held.parts["user"] == "held"
    assert "would mark 40 of 100 live user resources deleted (40%, more than the 20% allowed)" in held.error
    assert "jumpsync deletions approve acme --type user" in held.error
    assert held.parts["group"] == "held"  # the vanished users' memberships are over the share as well
    assert live_ids(engine, "user") == users_before  # nothing deleted
    assert {(g.resource_id, g.principal_id) for g in queries.grants(engine, NAME, False)
            if g.resource_type == "group"} == members_before
    assert [(p.connector, p.part) for p in queries.held_parts(engine)] == [(NAME, "group"), (NAME, "user")]

    assert run_sync(settings, engine).status == "partial"  # still held without an approval
    with Session(engine) as session:
        cid = queries.connector_id(session, NAME)
    approve(engine, cid, "user", "tests")
    approve(engine, cid, "group", "tests")
    approved = run_sync(settings, engine)
    assert approved.status == "succeeded", approved
    assert live_ids(engine, "user") == users_before - set(gone)
    assert_same(actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME)),
                expected_state(sim.dump()))
    assert queries.held_parts(engine) == []
    # An approval is used once: the next mass deletion is held again.
    for user in sim.dump()["users"][:20]:
        sim.delete_user(user["_id"])
    assert run_sync(settings, engine).parts["user"] == "held"


def test_an_outage_returning_empty_lists_deletes_nothing(engine, db_url, simulator):
    """JumpCloud answers 200 with nothing in it: the sync must not read that as everyone leaving."""
    sim = simulator(TenantSpec(seed=62, users=60, admins=4, groups=12, apps=12))
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    before = actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME))
    for group in sim.dump()["groups"]:
        sim.api("DELETE", f"/api/v2/usergroups/{group['id']}")
    for app in sim.dump()["apps"]:
        sim.sim("DELETE", f"/_sim/applications/{app['_id']}")
    summary = run_sync(settings, engine)
    assert summary.parts["group"] == "held" and summary.parts["app"] == "held"
    after = actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME))
    assert after.resources == before.resources and after.grants == before.grants
