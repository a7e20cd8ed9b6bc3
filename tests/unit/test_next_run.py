"""``worker.beat.next_run_at``: when beat next triggers a connector, the same whenever it is asked."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery.schedules import schedule

from config.values import parse_cron
from worker.beat import next_run_at

LAST = datetime(2026, 1, 1, 20, 26, 39, tzinfo=timezone.utc)


def test_interval_is_last_trigger_plus_interval_whenever_asked():
    for later in (23, 31, 36, 41):  # the calls at 20:27:02, :10, :15, :20
        assert next_run_at(schedule(300), LAST, LAST + timedelta(seconds=later)) == LAST + timedelta(minutes=5)


def test_overdue_interval_stays_in_the_past():
    """Beat not running: the time it was due, not a time that slides along with the clock."""
    now = LAST + timedelta(hours=7)
    assert next_run_at(schedule(6 * 3600), LAST, now) == LAST + timedelta(hours=6)


def test_cron_is_its_next_time_after_the_last_trigger():
    cron = parse_cron("15 */6 * * *")
    for later in (1, 3600, 3 * 3600):
        assert next_run_at(cron, LAST, LAST + timedelta(seconds=later)) == datetime(2026, 1, 2, 0, 15,
                                                                                      tzinfo=timezone.utc)


def test_never_triggered_is_due_now():
    now = LAST + timedelta(seconds=5)
    assert next_run_at(schedule(300), None, now) == now
