"""The sync reaper: stale runs are failed, lost part and finalizer messages are found (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from models.tables import SyncPart, SyncRun, utcnow
from pipeline import reaper, sync
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings
from tests.support.runs import latest_run


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def backdate(engine, run_id: int, minutes: int) -> None:
    with Session(engine) as session:
        past = utcnow() - timedelta(minutes=minutes)
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(started_at=past))
        session.execute(update(SyncPart).where(SyncPart.run_id == run_id, SyncPart.finished_at.is_not(None))
                        .values(finished_at=past))
        session.commit()


def test_lost_parts_and_finalizers_are_found_and_stale_runs_failed(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    stale_after = timedelta(hours=2)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    sync.run_part(settings, engine, started.run_id, "user", NAME)  # the other parts' messages were lost
    assert reaper.reap(engine, stale_after).parts == []            # too early to call them lost
    backdate(engine, started.run_id, 10)
    lost = reaper.reap(engine, stale_after)
    assert sorted(lost.parts) == [(started.run_id, p, NAME) for p in ("admin", "app", "group")]
    for run_id, part, connector in lost.parts:  # what the reap task sends
        sync.run_part(settings, engine, run_id, part, connector)
    # Every part ended, but the finalizer message was lost too (the run may even still say "running").
    with Session(engine) as session:
        session.execute(update(SyncRun).where(SyncRun.id == started.run_id).values(status="running"))
        session.commit()
    backdate(engine, started.run_id, 10)
    lost = reaper.reap(engine, stale_after)
    assert lost.finalize == [(started.run_id, NAME)] and lost.parts == []
    assert sync.finalize(engine, started.run_id).status == "succeeded"
    assert reaper.reap(engine, stale_after).finalize == []

    # A run whose worker died for good: failed once stale, so the connector can sync again.
    second = sync.begin(settings, engine, NAME, trigger="manual")
    backdate(engine, second.run_id, 180)
    assert reaper.reap(engine, stale_after).failed_runs == 1
    run = latest_run(engine, NAME)
    assert run.id == second.run_id and run.status == "failed" and "abandoned" in run.error
    assert all(p.status in ("failed", "pending") or p.phase == "derive" for p in run.parts)
    assert not sync.begin(settings, engine, NAME, trigger="manual").skipped


def test_skipped_runs_older_than_a_week_are_pruned_and_nothing_else(engine, db_url, simulator):
    from pipeline.pruning import EVENTS_RUN_RETENTION, prune_skipped_runs

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    running = sync.begin(settings, engine, NAME, trigger="manual")
    old_skip = sync.begin(settings, engine, NAME, trigger="schedule")  # the connector is busy: recorded skipped
    new_skip = sync.begin(settings, engine, NAME, trigger="schedule")
    assert old_skip.skipped and new_skip.skipped
    backdate(engine, old_skip.run_id, int((EVENTS_RUN_RETENTION + timedelta(hours=1)).total_seconds() // 60))
    backdate(engine, running.run_id, int((EVENTS_RUN_RETENTION + timedelta(hours=1)).total_seconds() // 60))
    assert prune_skipped_runs(engine, utcnow() - EVENTS_RUN_RETENTION) == 1
    with Session(engine) as session:
        kept = set(session.execute(select(SyncRun.id)).scalars())
    assert kept == {running.run_id, new_skip.run_id}  # a running run, however old, and a recent skip stay
