"""The sync pipeline without a broker: the same functions the Celery tasks call, against the simulator over
real HTTP, on SQLite and on PostgreSQL. Every resource and grant is compared with the tenant."""

from __future__ import annotations

import math

import pytest

from models import queries
from pipeline import sync
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.expected import actual_state, assert_same, expected_state
from tests.support.runs import latest_run


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def db_state(engine):
    return actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME))


def test_full_sync_equals_the_tenant(engine, db_url, simulator):
    sim = simulator()
    summary = run_sync(make_settings(db_url, sim.url), engine)
    assert summary.status == "succeeded", summary
    expected = expected_state(sim.dump())
    assert len(expected.grants) > 100 and any(g[5] for g in expected.grants)  # the tenant is not trivial
    assert_same(db_state(engine), expected)


def test_resync_reflects_every_change_including_deletions(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    before = sim.dump()
    users = [u for u in before["users"] if u.get("state") == "ACTIVATED" and not u.get("suspended")]
    group = next(g for g in before["groups"] if len(g["members"]) >= 2)
    app = next(a for a in before["apps"] if a["groups"])
    removed_user, suspended_user, leaver = users[0]["_id"], users[1]["_id"], group["members"][0]
    newcomer = sim.create_user("newcomer")["_id"]
    sim.delete_user(removed_user)
    sim.suspend_user(suspended_user)
    sim.group_member(group["id"], newcomer, "add")
    if leaver != removed_user:
        sim.group_member(group["id"], leaver, "remove")
    unbound_group = app["groups"][0]
    sim.app_binding(app["_id"], "user_group", unbound_group, "remove")

    summary = run_sync(settings, engine)
    assert summary.status == "succeeded", summary
    assert_same(db_state(engine), expected_state(sim.dump()))
    rows = {(r.type, r.id): r for r in queries.resources(engine, NAME)}
    assert rows[("user", removed_user)].deleted is True
    assert rows[("user", newcomer)].deleted is False
    assert rows[("user", suspended_user)].status == "suspended"
    grants = queries.grants(engine, NAME)
    unbound = [g for g in grants if g.resource_id == app["_id"] and
               (g.principal_id == unbound_group or g.via == unbound_group)]
    assert unbound and all(g.deleted for g in unbound)


def test_unchanged_resync_writes_nothing_and_undelete_works(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    run_sync(settings, engine)
    run = latest_run(engine, NAME)
    assert sum(p.counts.get("rows_written", 0) for p in run.parts) == 0
    assert all(p.status == "succeeded" for p in run.parts)


def test_a_failing_part_deletes_nothing_of_its_type(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    groups_before = {r.id for r in queries.resources(engine, NAME, "group", include_deleted=False)}
    members_before = {(g.resource_id, g.principal_id) for g in queries.grants(engine, NAME, False)
                      if g.resource_type == "group"}
    victim = sim.dump()["groups"][0]["id"]
    sim.api("DELETE", f"/api/v2/usergroups/{victim}")
    sim.set_faults({"rules": [{"path": "^/api/v2/usergroups/[^/]+/members$", "status": 500}]})

    summary = run_sync(settings, engine)
    assert summary.status == "partial"
    assert summary.parts["group"] == "failed" and summary.parts["app_via_group"] == "skipped"
    assert summary.parts["user"] == summary.parts["app"] == "succeeded"
    assert "connector 'acme'" in summary.error and "500" in summary.error
    assert {r.id for r in queries.resources(engine, NAME, "group", include_deleted=False)} == groups_before
    assert {(g.resource_id, g.principal_id) for g in queries.grants(engine, NAME, False)
            if g.resource_type == "group"} == members_before

    sim.clear_faults()
    assert run_sync(settings, engine).status == "succeeded"
    assert victim not in {r.id for r in queries.resources(engine, NAME, "group", include_deleted=False)}


def test_a_second_trigger_while_running_is_recorded_as_skipped(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    first = sync.begin(settings, engine, NAME, trigger="schedule")
    second = sync.begin(settings, engine, NAME, trigger="manual")
    assert second.skipped and f"run {first.run_id}" in second.reason
    for part in first.parts:
        sync.run_part(settings, engine, first.run_id, part, NAME)
    assert sync.finalize(engine, first.run_id).status == "succeeded"
    assert not sync.begin(settings, engine, NAME, trigger="manual").skipped


def test_a_redelivered_part_is_harmless(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    steps = [sync.run_part(settings, engine, started.run_id, part, NAME) for part in started.parts]
    again = sync.run_part(settings, engine, started.run_id, "user", NAME)  # the same message, delivered again
    assert not again.result.ran and again.finalize  # it re-asks for the finalizer, which is idempotent
    assert steps[-1].finalize
    assert sync.finalize(engine, started.run_id).status == "succeeded"
    assert sync.finalize(engine, started.run_id).status == "succeeded"
    assert_same(db_state(engine), expected_state(sim.dump()))


def test_resource_types_subset(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url, resource_types=("user", "group"))
    summary = run_sync(settings, engine)
    assert set(summary.parts) == {"user", "group"}
    assert {r.type for r in queries.resources(engine, NAME)} == {"user", "group"}


def r_min(dump: dict) -> int:
    """The fewest requests that return the whole tenant at 100 records a page (an empty listing is one); apps are
    listed twice (v1 records, v2 provisioning)."""
    pages = lambda n: max(1, math.ceil(n / 100))
    return (pages(len(dump["users"])) + pages(len(dump["admins"])) + pages(len(dump["groups"]))
            + sum(pages(len(g["members"])) for g in dump["groups"]) + 2 * pages(len(dump["apps"]))
            + sum(pages(len(a["users"])) + pages(len(a["groups"])) for a in dump["apps"]))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sync_makes_exactly_r_min_requests(engine, db_url, simulator):
    sim = simulator(TenantSpec(seed=3, users=250, admins=5, groups=6, apps=4))
    dump = sim.dump()
    sim.reset_stats()
    run_sync(make_settings(db_url, sim.url), engine)
    stats = sim.stats()
    assert stats["requests"] == r_min(dump), stats["by_route"]
    run = latest_run(engine, NAME)
    assert sum(p.requests for p in run.parts) == stats["requests"]


def test_a_redelivered_trigger_reuses_its_run(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    first = sync.begin(settings, engine, NAME, trigger="schedule", task_id="task-1")
    sync.run_part(settings, engine, first.run_id, "user", NAME)
    again = sync.begin(settings, engine, NAME, trigger="schedule", task_id="task-1")  # its worker died
    assert (again.run_id, again.skipped) == (first.run_id, False)
    assert sorted(again.parts) == ["admin", "app", "group"]  # only what is still pending is sent again
    for part in again.parts:
        sync.run_part(settings, engine, again.run_id, part, NAME)
    assert sync.finalize(engine, first.run_id).status == "succeeded"
    done = sync.begin(settings, engine, NAME, trigger="schedule", task_id="task-1")
    assert (done.run_id, done.parts) == (first.run_id, ())  # delivered again after the run ended: nothing new
    from sqlalchemy import func, select
    from sqlmodel import Session

    from models.tables import SyncRun

    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(SyncRun)).scalar_one() == 1  # one run in all


def test_one_finalizer_and_the_run_ends_only_when_every_derived_part_has(engine, db_url, simulator):
    """Two parts ending at once used to enqueue two finalizers, and the one that found the other deriving
    ended the run meanwhile: a sync read back at once lacked the access through groups (seen on PostgreSQL)."""
    from pipeline.claims import claim_part, end_part
    from pipeline.fanin import finish_run, try_begin_finalize

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    for part in started.parts:
        sync.run_part(settings, engine, started.run_id, part, NAME)
    # Every fetch part has ended and the last one flipped the run: the others ask in vain, a redelivered one
    # (its first delivery may have died before enqueuing) is told to send the finalizer again.
    assert try_begin_finalize(engine, started.run_id) is False
    assert try_begin_finalize(engine, started.run_id, again=True) is True
    # A finalizer is deriving access through groups when a re-sent one reaches finish_run: the run waits.
    claim = claim_part(engine, started.run_id, "app_via_group", run_status="finalizing")
    assert finish_run(engine, started.run_id).status == "finalizing"
    end_part(engine, started.run_id, "app_via_group", claim.attempt, status="succeeded")
    done = sync.finalize(engine, started.run_id)
    assert done.status == "succeeded" and set(done.parts.values()) == {"succeeded"}
