"""The sync reaper: stale runs are failed, lost part and finalizer messages are found (SQLite, PostgreSQL); and
the runs whose messages died with their broker are failed at once by whoever knows it (``jumpsync up``)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update
from sqlmodel import Session

from models.states import PartStatus, RunStatus
from models.tables import SyncPart, SyncRun, utcnow
from pipeline import derived, reaper, sync
from pipeline.claims import PartLease, claim_part, end_part, renew_lease
from pipeline.fanin import try_begin_finalize
from pipeline.runs import AbandonedRun, abandon_orphaned_runs
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings
from tests.support.runs import latest_run
from tests.support.servers import RedisServer
from worker import broker_epoch


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def backdate(engine, run_id: int, minutes: float) -> None:
    """The run, and every start and end of its parts, ``minutes`` ago: nothing of it heard since."""
    with Session(engine) as session:
        past = utcnow() - timedelta(minutes=minutes)
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(started_at=past))
        for column in ("started_at", "finished_at"):
            session.execute(update(SyncPart).where(SyncPart.run_id == run_id, getattr(SyncPart, column).is_not(None))
                            .values({column: past}))
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


def test_a_run_not_heard_from_for_lost_after_is_moved_on_and_a_busy_one_is_left_alone(engine, db_url, simulator):
    """The bound: a run none of whose parts runs, silent for ``LOST_AFTER``, gets its pending parts or its
    finalizer again; a run with a part running (a live worker, or a message the broker gives back) gets nothing,
    however old, and neither does a finalizer still deriving."""
    settings = make_settings(db_url, simulator().url)
    stale_after = timedelta(hours=2)
    bound = reaper.LOST_AFTER.total_seconds() / 60
    started = sync.begin(settings, engine, NAME, trigger="manual")
    sync.run_part(settings, engine, started.run_id, "user", NAME)
    backdate(engine, started.run_id, bound * 0.5)
    assert reaper.reap(engine, stale_after).parts == []  # heard from within the bound
    backdate(engine, started.run_id, bound * 1.5)
    assert [p for _, p, _ in reaper.reap(engine, stale_after).parts] == ["admin", "app", "group"]

    # One part running (its message taken by a worker): the run is busy, the others wait for a free worker.
    assert claim_part(engine, started.run_id, "admin").attempt == 1
    backdate(engine, started.run_id, 30)
    assert reaper.reap(engine, stale_after).parts == []
    with Session(engine) as session:  # its worker ended it; nothing heard since
        session.execute(update(SyncPart).where(SyncPart.run_id == started.run_id, SyncPart.name == "admin")
                        .values(status=PartStatus.SUCCEEDED))
        session.commit()
    assert [p for _, p, _ in reaper.reap(engine, stale_after).parts] == ["app", "group"]

    for part in ("app", "group"):
        sync.run_part(settings, engine, started.run_id, part, NAME)
    assert try_begin_finalize(engine, started.run_id, again=True)  # finalizing; its finalizer message lost
    backdate(engine, started.run_id, bound * 0.5)
    assert reaper.reap(engine, stale_after).finalize == []
    backdate(engine, started.run_id, bound * 1.5)
    assert reaper.reap(engine, stale_after).finalize == [(started.run_id, NAME)]
    # A finalizer deriving (a derived part running) is alive, however long it takes: not sent again.
    role = claim_part(engine, started.run_id, "role", run_status=RunStatus.FINALIZING).attempt
    assert role == 1
    backdate(engine, started.run_id, 30)
    assert reaper.reap(engine, stale_after).finalize == []
    # It died between two derived parts: sent again, and the re-sent one ends the run.
    assert end_part(engine, started.run_id, "role", role, status=PartStatus.SUCCEEDED)
    backdate(engine, started.run_id, bound * 0.5)
    assert reaper.reap(engine, stale_after).finalize == []
    backdate(engine, started.run_id, bound * 1.5)
    assert reaper.reap(engine, stale_after).finalize == [(started.run_id, NAME)]
    assert sync.finalize(engine, started.run_id).status == RunStatus.SUCCEEDED
    assert reaper.reap(engine, stale_after) == reaper.Reaped()


def test_runs_whose_broker_is_gone_are_failed_at_once_and_free_their_connector(engine, db_url, simulator):
    """``jumpsync up`` starting a fresh Redis: the active runs of its connectors, running or finalizing, are
    failed with the reason, their open parts with them; other connectors' runs and ended runs are untouched."""
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    other = make_settings(db_url, sim.url, name="other")
    done = sync.begin(settings, engine, NAME, trigger="manual")
    for part in done.parts:
        sync.run_part(settings, engine, done.run_id, part, NAME)
    assert sync.finalize(engine, done.run_id).status == RunStatus.SUCCEEDED
    fetching = sync.begin(settings, engine, NAME, trigger="manual")
    claim_part(engine, fetching.run_id, "user")  # a part running when the broker died, the others pending
    elsewhere = sync.begin(other, engine, "other", trigger="manual")
    reason = "its messages died with the Redis of an earlier jumpsync up"

    assert abandon_orphaned_runs(engine, [NAME], reason=reason) == [
        AbandonedRun(fetching.run_id, NAME, RunStatus.RUNNING)]
    run = latest_run(engine, NAME)
    assert run.id == fetching.run_id and run.status == RunStatus.FAILED and run.error == f"abandoned: {reason}"
    assert {p.status for p in run.parts} == {PartStatus.FAILED} and run.finished_at is not None
    assert latest_run(engine, "other").status == RunStatus.RUNNING  # not this caller's connector
    assert latest_run(engine, NAME, finished=True).id == fetching.run_id
    assert abandon_orphaned_runs(engine, [NAME], reason=reason) == []  # nothing left; the ended run untouched

    # A run left finalizing (its last part died while finalizing): the fetched parts keep their ends, the derived fail.
    finalizing = sync.begin(settings, engine, NAME, trigger="manual")
    assert not finalizing.skipped  # the slot was freed
    for part in finalizing.parts:
        sync.run_part(settings, engine, finalizing.run_id, part, NAME)
    assert abandon_orphaned_runs(engine, [NAME, "other"], reason=reason) == [
        AbandonedRun(elsewhere.run_id, "other", RunStatus.RUNNING),
        AbandonedRun(finalizing.run_id, NAME, RunStatus.FINALIZING)]
    run = latest_run(engine, NAME)
    assert run.status == RunStatus.FAILED
    assert {p.name: p.status for p in run.parts if p.phase == "fetch"} == dict.fromkeys(finalizing.parts,
                                                                                      PartStatus.SUCCEEDED)
    assert {p.status for p in run.parts if p.phase == "derive"} == {PartStatus.FAILED}
    # A finalizer that turns up after all ends nothing: the run has ended.
    assert sync.finalize(engine, finalizing.run_id).status == RunStatus.FAILED
    assert not sync.begin(settings, engine, NAME, trigger="manual").skipped


def lease_renewed(engine, run_id: int, name: str, seconds_ago: float) -> None:
    """The part's lease last renewed ``seconds_ago``."""
    with Session(engine) as session:
        session.execute(update(SyncPart).where(SyncPart.run_id == run_id, SyncPart.name == name)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=seconds_ago)))
        session.commit()


def test_a_running_part_whose_lease_ran_out_is_handed_over_whatever_the_broker(engine, db_url, simulator):
    """A worker host lost mid-part: its part stays ``running`` and its message with the broker until the
    visibility timeout (70 min). Its lease, no longer renewed, runs out: the reaper hands the part back to
    pending and sends it again; the lost attempt, should it still run, records nothing."""
    settings = make_settings(db_url, simulator().url)
    stale_after = timedelta(hours=2)
    lease = reaper.PART_LEASE.total_seconds()
    started = sync.begin(settings, engine, NAME, trigger="manual")
    lost_attempt = claim_part(engine, started.run_id, "user").attempt
    live_attempt = claim_part(engine, started.run_id, "group").attempt
    lease_renewed(engine, started.run_id, "user", lease * 1.5)
    lease_renewed(engine, started.run_id, "group", lease * 0.5)  # slow, alive
    handed = reaper.reap(engine, stale_after)
    assert handed.parts == [(started.run_id, "user", NAME)] and handed.finalize == []
    user = next(p for p in latest_run(engine, NAME).parts if p.name == "user")
    assert user.status == PartStatus.PENDING and "stopped renewing its lease" in user.error
    assert not renew_lease(engine, started.run_id, "user", lost_attempt)  # the lost attempt learns it
    assert not end_part(engine, started.run_id, "user", lost_attempt, status=PartStatus.SUCCEEDED)
    assert renew_lease(engine, started.run_id, "group", live_attempt)
    assert reaper.reap(engine, stale_after) == reaper.Reaped()  # handed over once, not at every tick

    step = sync.run_part(settings, engine, started.run_id, "user", NAME)  # the message the reaper sent
    assert step.result.status == PartStatus.SUCCEEDED
    assert next(p for p in latest_run(engine, NAME).parts if p.name == "user").attempt == lost_attempt + 1


def test_a_derived_part_whose_lease_ran_out_sends_the_finalizer_again(engine, db_url, simulator):
    settings = make_settings(db_url, simulator().url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    for part in started.parts:
        sync.run_part(settings, engine, started.run_id, part, NAME)
    role = claim_part(engine, started.run_id, "role", run_status=RunStatus.FINALIZING).attempt
    assert role == 1
    lease_renewed(engine, started.run_id, "role", reaper.PART_LEASE.total_seconds() * 2)
    assert reaper.reap(engine, timedelta(hours=2)).finalize == [(started.run_id, NAME)]
    assert sync.finalize(engine, started.run_id).status == RunStatus.SUCCEEDED


def test_the_lease_is_renewed_while_the_part_runs_and_lost_once_handed_over(engine, db_url, simulator):
    settings = make_settings(db_url, simulator().url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    attempt = claim_part(engine, started.run_id, "admin").attempt
    lease_renewed(engine, started.run_id, "admin", 3600)
    with PartLease(engine, started.run_id, "admin", attempt, every=0.05) as lease:
        deadline = time.monotonic() + 10
        while heartbeat(engine, started.run_id, "admin") < utcnow() - timedelta(seconds=5):
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.02)
        with Session(engine) as session:  # the reaper handed it over meanwhile
            session.execute(update(SyncPart).where(SyncPart.run_id == started.run_id, SyncPart.name == "admin")
                            .values(status=PartStatus.PENDING))
            session.commit()
        while not lease.lost:
            assert time.monotonic() < deadline, "the lease never noticed the hand-over"
            time.sleep(0.02)


def heartbeat(engine, run_id: int, name: str):
    with Session(engine) as session:
        return session.execute(select(SyncPart.heartbeat_at).where(SyncPart.run_id == run_id,
                                                                   SyncPart.name == name)).scalar_one()


def test_after_the_broker_lost_its_data_every_awaited_message_is_found(engine, db_url, simulator):
    """A Redis restarted without its data (or flushed) took the queued parts with it, while other parts of the
    run still run: the run is not quiet, so the lost-message rule would wait for it. ``waiting_on_broker`` names
    every message the active runs wait for, to be sent again at once."""
    settings = make_settings(db_url, simulator().url)
    running = sync.begin(settings, engine, NAME, trigger="manual")
    assert claim_part(engine, running.run_id, "user").attempt == 1  # running on a worker: not sent again
    sync.run_part(settings, engine, running.run_id, "admin", NAME)     # ended
    waiting = reaper.waiting_on_broker(engine)
    assert sorted(waiting.parts) == [(running.run_id, "app", NAME), (running.run_id, "group", NAME)]
    assert waiting.finalize == []
    for part in ("app", "group", "user"):
        sync.run_part(settings, engine, running.run_id, part, NAME)
    with Session(engine) as session:  # every fetch part ended, the finalizer not run (its message was lost)
        session.execute(update(SyncRun).where(SyncRun.id == running.run_id).values(status="finalizing"))
        session.commit()
    assert reaper.waiting_on_broker(engine) == reaper.Reaped(finalize=[(running.run_id, NAME)])
    assert sync.finalize(engine, running.run_id).status == RunStatus.SUCCEEDED
    assert reaper.waiting_on_broker(engine) == reaper.Reaped()


def test_the_broker_epoch_says_when_redis_lost_its_data(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url)
    try:
        assert broker_epoch.data_lost(client)  # a Redis never seen: nothing is known of what it held
        assert not broker_epoch.data_lost(client)
        client.flushall()
        assert broker_epoch.data_lost(client)
        assert not broker_epoch.data_lost(client)
    finally:
        client.close()
        server.stop()


def test_a_finalizer_sent_twice_never_takes_a_derived_part_from_the_other(engine, db_url, simulator, monkeypatch):
    """The reaper may send a finalizer again while the first still derives (the run looked quiet). The second
    leaves the first's running part alone, even when it read the part pending just before the first claimed it:
    two of them deriving one part at once wrote its rows twice (a UNIQUE violation on the baseline's
    INSERT ... SELECT failed the run). A dead finalizer's part comes back through its lease."""
    settings = make_settings(db_url, simulator().url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    for part in started.parts:
        sync.run_part(settings, engine, started.run_id, part, NAME)
    assert try_begin_finalize(engine, started.run_id, again=True)
    real_claim, first = derived.claim_part, []

    def first_finalizer_claims_it_meanwhile(engine_, run_id, name, **options):
        if name == "app_via_group" and not first:  # the other finalizer, between this one's read and claim
            first.append(real_claim(engine_, run_id, name, run_status=RunStatus.FINALIZING).attempt)
        return real_claim(engine_, run_id, name, **options)

    monkeypatch.setattr(derived, "claim_part", first_finalizer_claims_it_meanwhile)
    second = sync.finalize(engine, started.run_id)  # the duplicate finalizer
    assert first == [1]
    assert second.status == RunStatus.FINALIZING and second.parts["app_via_group"] == PartStatus.RUNNING
    assert next(p for p in latest_run(engine, NAME).parts if p.name == "app_via_group").attempt == 1
    monkeypatch.undo()
    assert end_part(engine, started.run_id, "app_via_group", 1, status=PartStatus.SUCCEEDED)
    assert sync.finalize(engine, started.run_id).status == RunStatus.SUCCEEDED
