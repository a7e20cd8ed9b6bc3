"""The incremental refresh against the simulator over real HTTP, on SQLite and PostgreSQL: what the events name
is read back and written, the database then equals a full sync of the same tenant, and the refresh asks for a
full sync where events cannot be trusted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from config.settings import SyncSettings
from models import queries
from models.tables import Change, EventCursor, SyncPart, SyncRun, utcnow
from pipeline import incremental
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.incremental import assert_same_state, scratch_sqlite
from tests.support.runs import latest_run


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def refresh(settings, engine) -> incremental.RefreshResult:
    return incremental.refresh(engine, settings.connector(NAME))


def full_sync_of(sim, tmp_path, name="full.db"):
    """A fresh database holding a full sync of the tenant as it is now."""
    engine = scratch_sqlite(tmp_path, name)
    assert run_sync(make_settings(str(engine.url), sim.url), engine).status == "succeeded"
    return engine


def test_a_quiet_minute_costs_one_request(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    first = refresh(settings, engine)
    assert (first.outcome, first.requests) == ("waiting", 0)  # no full sync yet: nothing to apply events to
    assert run_sync(settings, engine).status == "succeeded"
    sim.reset_stats()
    result = refresh(settings, engine)
    assert (result.outcome, result.requests, result.run_id) == ("quiet", 1, None)
    assert sim.stats()["requests"] == 1
    with Session(engine) as session:
        assert session.execute(select(SyncRun).where(SyncRun.trigger == "events")).first() is None


def test_every_kind_of_change_is_applied_and_equals_a_full_sync(engine, db_url, simulator, tmp_path):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    tenant = sim.dump()
    users = [u["_id"] for u in tenant["users"]]
    group = next(g for g in tenant["groups"] if g["members"])
    app = next(a for a in tenant["apps"] if a["groups"])
    admin = tenant["admins"][0]

    newcomer = sim.create_user("newcomer")["_id"]
    sim.group_member(group["id"], newcomer, "add")
    sim.group_member(group["id"], group["members"][0], "remove")
    sim.suspend_user(users[1])
    sim.update_user(users[2], email="renamed@example.org", department="Finance")
    sim.delete_user(users[3])
    fresh_group = sim.create_group("Incident responders")["id"]
    sim.group_member(fresh_group, users[4], "add")
    sim.app_binding(app["_id"], "user_group", fresh_group, "add")
    sim.app_binding(app["_id"], "user_group", app["groups"][0], "remove")
    sim.app_binding(app["_id"], "user", users[5], "add")
    new_app = sim.create_app("PagerDuty")["_id"]
    sim.app_binding(new_app, "user_group", group["id"], "add")
    sim.set_admin_role(admin["_id"], "Help Desk")
    sim.create_admin("auditor@example.org", role="Read Only")
    doomed_group = next(g["id"] for g in tenant["groups"] if g["id"] != group["id"] and g["members"])
    sim.delete_group(doomed_group)

    sim.reset_stats()
    result = refresh(settings, engine)
    assert result.outcome == "applied", result
    assert result.requests == sim.stats()["requests"]
    assert result.event_requests == 1 and result.read_requests == result.reads  # every listing fits one page
    assert_same_state(engine, full_sync_of(sim, tmp_path))

    resources = {(r.type, r.id): r for r in queries.resources(engine, NAME)}
    assert resources[("user", users[3])].deleted is True
    assert resources[("group", doomed_group)].deleted is True
    assert resources[("user", users[1])].status == "suspended"
    with Session(engine) as session:
        changes = session.execute(select(Change.change, Change.resource_type, Change.resource_id)
                                  .where(Change.run_id == result.run_id)).all()
        run = session.get(SyncRun, result.run_id)
    assert run.trigger == "events" and run.status == "succeeded"
    assert ("deleted", "user", users[3]) in changes and ("created", "user", newcomer) in changes
    assert latest_run(engine, NAME).trigger == "manual"  # an incremental run is not the last sync

    sim.reset_stats()
    again = refresh(settings, engine)  # the same events are in the overlap window: applied once
    assert (again.outcome, again.requests) == ("quiet", 1)


def test_a_delete_event_of_an_object_that_is_back_deletes_nothing(engine, db_url, simulator, tmp_path):
    """Only a 404 confirms a delete event; reading an object that exists writes it as it is."""
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    user = sim.dump()["users"][0]["_id"]
    sim.delete_user(user)
    sim.state.orgs[sim.org_id].insights._events[-1][1]["resource"]["id"] = sim.dump()["users"][1]["_id"]
    result = refresh(settings, engine)
    assert result.outcome == "applied"
    live = {r.id for r in queries.resources(engine, NAME, "user", include_deleted=False)}
    assert sim.dump()["users"][0]["_id"] in live  # the user the forged event named is still there
    assert user in live  # and the deleted one, named by no event, waits for the full sync
    run_sync(settings, engine)
    assert user not in {r.id for r in queries.resources(engine, NAME, "user", include_deleted=False)}


def test_an_event_that_cannot_be_interpreted_asks_for_a_full_sync(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    tenant = sim.dump()
    sim.group_member(tenant["groups"][0]["id"], tenant["users"][0]["_id"], "add"
                     if tenant["users"][0]["_id"] not in tenant["groups"][0]["members"] else "remove")
    del sim.state.orgs[sim.org_id].insights._events[-1][1]["association"]["connection"]["to"]
    result = refresh(settings, engine)
    assert result.outcome == "full_sync" and result.full_sync and "cannot be interpreted" in result.reason
    again = refresh(settings, engine)  # asked once: it waits for that full sync instead of asking every minute
    assert again.outcome == "waiting" and not again.full_sync
    assert run_sync(settings, engine).status == "succeeded"
    assert refresh(settings, engine).outcome == "quiet"  # the full sync moved the cursor past the event


def test_a_cursor_older_than_retention_and_too_many_reads_ask_for_a_full_sync(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url, events_retention="1h")
    run_sync(settings, engine)
    with Session(engine) as session:  # the last full sync and the cursor are two hours old
        session.execute(update(SyncRun).values(started_at=utcnow() - timedelta(hours=2)))
        session.commit()
    result = refresh(settings, engine)
    assert result.outcome == "full_sync" and "retention" in result.reason and result.requests == 0

    cheap = make_settings(db_url, sim.url)
    run_sync(cheap, engine)
    with Session(engine) as session:
        session.execute(update(EventCursor).values(full_sync_asked_at=None))
        session.commit()
    for user in sim.dump()["users"][:4]:
        sim.suspend_user(user["_id"])
    with Session(engine) as session:  # as if the last full sync had cost 3 requests
        session.execute(update(SyncPart).where(SyncPart.run_id == latest_run(engine, NAME).id)
                        .values(requests=0))
        session.execute(update(SyncPart).where(SyncPart.run_id == latest_run(engine, NAME).id,
                                               SyncPart.name == "user").values(requests=3))
        session.commit()
    result = refresh(cheap, engine)
    assert result.outcome == "full_sync" and "more than the" in result.reason


def test_a_refresh_waits_for_a_running_full_sync_and_a_full_sync_for_a_refresh(engine, db_url, simulator):
    from models.connectors import registered_connector_id
    from pipeline import sync
    from pipeline.events_runs import end_events_run, open_events_run

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    assert refresh(settings, engine).outcome == "skipped"
    for part in started.parts:
        sync.run_part(settings, engine, started.run_id, part, NAME)
    sync.finalize(engine, started.run_id)

    run_id = open_events_run(engine, registered_connector_id(engine, settings.connector(NAME)))
    blocked = sync.begin(settings, engine, NAME, trigger="schedule")
    assert blocked.retry and blocked.skipped  # the task tries again in a few seconds; no skip is recorded
    end_events_run(engine, run_id, status="succeeded", counts={}, requests=0)
    assert not sync.begin(settings, engine, NAME, trigger="schedule").skipped


def test_refreshes_failing_too_long_hand_over_to_a_full_sync(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    assert refresh(settings, engine).outcome == "quiet"
    sim.set_faults({"rules": [{"path": "^/insights/", "status": 403}]})  # e.g. the key lost its admin role
    failed = refresh(settings, engine)
    assert failed.outcome == "failed" and "403" in failed.reason and not failed.full_sync
    with Session(engine) as session:  # as if it had been failing for 20 minutes since the full sync
        session.execute(update(EventCursor).values(cursor=utcnow() - timedelta(minutes=20)))
        session.execute(update(SyncRun).values(started_at=utcnow() - timedelta(minutes=21)))
        session.commit()
    stuck = refresh(settings, engine)
    assert stuck.outcome == "full_sync" and stuck.full_sync and stuck.reason.startswith("no refresh has succeeded")
    assert refresh(settings, engine).outcome == "waiting"  # asked once; again in an hour, as without events


def test_a_partial_full_sync_is_a_base_when_every_type_was_read(engine, db_url, simulator):
    """A run held back by the deletion valve read everything (its deletions wait); one with a failed part did not."""
    from models.connectors import registered_connector_id
    from pipeline.runs import last_complete_sync

    sim = simulator()
    settings = make_settings(db_url, sim.url, SyncSettings(max_delete_share=0.0, delete_hold_min=0))
    sim.set_faults({"rules": [{"path": "^/api/v2/usergroups$", "status": 500}]})
    assert run_sync(settings, engine).status == "partial"  # the group part failed
    assert refresh(settings, engine).outcome == "waiting"
    sim.clear_faults()
    assert run_sync(settings, engine).status == "succeeded"
    sim.delete_user(sim.dump()["users"][0]["_id"])
    held = run_sync(settings, engine)
    assert held.status == "partial" and held.parts["user"] == "held"
    cid = registered_connector_id(engine, settings.connector(NAME))
    assert last_complete_sync(engine, cid).run_id == held.run_id
    assert refresh(settings, engine).outcome in ("quiet", "applied")


def test_the_window_reaches_back_before_a_full_syncs_start(engine, db_url, simulator, tmp_path):
    """The run's start is the worker's clock: a change logged just before it (a clock up to 30 s ahead of
    JumpCloud's) is still read."""
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    user = sim.dump()["users"][0]["_id"]
    sim.suspend_user(user)
    with Session(engine) as session:
        session.execute(update(SyncRun).values(started_at=utcnow() + timedelta(seconds=20)))
        session.commit()
    result = refresh(settings, engine)
    assert result.outcome == "applied"
    assert_same_state(engine, full_sync_of(sim, tmp_path))


def test_old_incremental_runs_are_pruned(engine, db_url, simulator):
    from pipeline.pruning import EVENTS_RUN_RETENTION, prune_events_runs

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    for user in sim.dump()["users"][:2]:
        sim.suspend_user(user["_id"])
        assert refresh(settings, engine).outcome == "applied"
    with Session(engine) as session:
        first = min(session.execute(select(SyncRun.id).where(SyncRun.trigger == "events")).scalars())
        session.execute(update(SyncRun).where(SyncRun.id == first)
                        .values(started_at=utcnow() - EVENTS_RUN_RETENTION - timedelta(hours=1)))
        session.commit()
    assert prune_events_runs(engine, utcnow() - EVENTS_RUN_RETENTION) == 1
    with Session(engine) as session:
        kept = session.execute(select(SyncRun.trigger).order_by(SyncRun.id)).scalars().all()
        parts = session.execute(select(SyncPart.run_id).where(SyncPart.run_id == first)).all()
    assert kept == ["manual", "events"] and parts == []
