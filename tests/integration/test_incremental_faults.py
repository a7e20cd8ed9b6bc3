"""Duplicated, late and lost events, and a broken events listing, never lose a change: each test shows what
repairs it (the refresh itself, the overlap window, the next full sync, or the full sync the refresh asks for)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session

from jumpcloud.client import JumpCloudClient
from jumpcloud.retry import RetryPolicy
from models import queries
from models.tables import SyncRun, utcnow
from pipeline import incremental
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.incremental import assert_same_state, live_state, scratch_sqlite


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


@pytest.fixture
def synced(engine, db_url, simulator):
    """A simulator, and settings for it whose database already holds a full sync."""
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    return sim, settings


def refresh(settings, engine, **kwargs) -> incremental.RefreshResult:
    return incremental.refresh(engine, settings.connector(NAME), **kwargs)


def full_sync_of(sim, tmp_path):
    engine = scratch_sqlite(tmp_path, f"full-{time.monotonic_ns()}.db")
    assert run_sync(make_settings(str(engine.url), sim.url), engine).status == "succeeded"
    return engine


def some_changes(sim) -> None:
    tenant = sim.dump()
    group = next(g for g in tenant["groups"] if g["members"])
    sim.group_member(group["id"], group["members"][0], "remove")
    sim.suspend_user(tenant["users"][-1]["_id"])


def test_duplicated_events_are_applied_once(engine, synced, tmp_path):
    sim, settings = synced
    sim.set_faults({"insights": {"duplicate": True}})
    some_changes(sim)
    result = refresh(settings, engine)
    assert result.outcome == "applied" and result.events == 2 and result.reads == 2  # 4 listed, 2 distinct
    assert_same_state(engine, full_sync_of(sim, tmp_path))


def test_a_late_event_is_caught_by_the_overlap_window(engine, synced, tmp_path):
    sim, settings = synced
    sim.set_faults({"insights": {"delay_seconds": 2}})
    some_changes(sim)
    assert refresh(settings, engine).outcome == "quiet"  # not visible yet: the cursor moves past them
    time.sleep(2.2)
    result = refresh(settings, engine)  # visible now, within the overlap behind the cursor
    assert result.outcome == "applied" and result.events == 2
    assert_same_state(engine, full_sync_of(sim, tmp_path))


def test_an_event_later_than_the_overlap_is_repaired_by_the_next_full_sync(tmp_path, simulator):
    from tests.support.incremental import scratch_sqlite as fresh

    engine = fresh(tmp_path, "incremental.db")
    sim = simulator()
    settings = make_settings(str(engine.url), sim.url, events_overlap="10s")
    run_sync(settings, engine)
    with Session(engine) as session:  # the full sync is a minute old: the window reaches back only 10 s
        session.execute(update(SyncRun).values(started_at=utcnow() - timedelta(minutes=1)))
        session.commit()
    sim.set_faults({"insights": {"delay_seconds": 12}})
    written = time.monotonic()
    some_changes(sim)
    assert refresh(settings, engine).outcome == "quiet"
    time.sleep(max(0.0, 10.8 - (time.monotonic() - written)))
    assert refresh(settings, engine).outcome == "quiet"  # still not visible; the cursor is 10.8 s past them
    time.sleep(max(0.0, 12.3 - (time.monotonic() - written)))
    assert refresh(settings, engine).outcome == "quiet"  # visible, but more than the overlap behind: missed
    assert live_state(engine) != live_state(full_sync_of(sim, tmp_path))
    run_sync(settings, engine)
    assert_same_state(engine, full_sync_of(sim, tmp_path))


def test_a_lost_event_is_repaired_by_the_next_full_sync(engine, synced, tmp_path):
    sim, settings = synced
    sim.set_faults({"insights": {"drop_next": 1}})
    some_changes(sim)  # the membership change is never logged; the suspension is
    result = refresh(settings, engine)
    assert result.outcome == "applied" and result.events == 1
    full = full_sync_of(sim, tmp_path)
    assert live_state(engine) != live_state(full)
    assert run_sync(settings, engine).status == "succeeded"
    assert_same_state(engine, full)
    assert refresh(settings, engine).outcome == "quiet"  # and the refresh goes on from the full sync


def test_an_absence_without_an_event_deletes_nothing(engine, synced, tmp_path):
    """A user's memberships are read back for an event about one group; another membership missing from that
    listing, whose removal was never logged, stays until the full sync removes it."""
    sim, settings = synced
    tenant = sim.dump()
    user = next(u["_id"] for u in tenant["users"]
                if sum(u["_id"] in g["members"] for g in tenant["groups"]) >= 1
                and any(u["_id"] not in g["members"] for g in tenant["groups"]))
    left = next(g["id"] for g in tenant["groups"] if user in g["members"])
    joined = next(g["id"] for g in tenant["groups"] if user not in g["members"])
    sim.set_faults({"insights": {"drop_next": 1}})
    sim.group_member(left, user, "remove")  # never logged
    sim.group_member(joined, user, "add")
    result = refresh(settings, engine)
    assert result.outcome == "applied" and result.reads == 1
    memberships = {g.resource_id for g in queries.grants(engine, NAME) if g.principal_id == user
                   and g.entitlement == "member" and not g.deleted}
    assert {left, joined} <= memberships
    run_sync(settings, engine)
    assert_same_state(engine, full_sync_of(sim, tmp_path))


def broken_events_client(connector, broker_url=None) -> JumpCloudClient:
    """An events API whose next-page token never moves: the listing cannot be read to its end."""
    def handler(request: httpx.Request) -> httpx.Response:
        events = [{"id": f"e{i}", "event_type": "user_update", "timestamp": "2026-12-06T10:00:00.000Z",
                   "resource": {"id": "u1", "type": "user"}} for i in range(2)]
        return httpx.Response(200, json=events, headers={"X-Result-Count": "2", "X-Limit": "2",
                                                         "X-Search_after": '[1, "same"]'})
    return JumpCloudClient(base_url="http://127.0.0.1:9", api_key="k", retry=RetryPolicy(max_attempts=1),
                           transport=httpx.MockTransport(handler))


def test_a_broken_events_listing_is_a_gap_that_asks_for_a_full_sync(engine, synced):
    sim, settings = synced
    result = refresh(settings, engine, events_client_factory=broken_events_client)
    assert result.outcome == "full_sync" and result.full_sync and result.reason.startswith("gap:")
    assert result.event_requests == 2  # the second page repeated the first's token


def test_an_events_api_that_fails_moves_nothing(engine, synced):
    sim, settings = synced
    sim.set_faults({"rules": [{"path": "^/insights/", "status": 503}]})
    some_changes(sim)
    result = refresh(settings, engine)
    assert result.outcome == "failed" and "503" in result.reason
    sim.clear_faults()
    assert refresh(settings, engine).outcome == "applied"  # the same window is read again
