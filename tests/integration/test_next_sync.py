"""``status``'s next sync against a running ``jumpsync beat``: the schedule's next time after the last trigger
(interval or cron), the same on every call."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from tests.support.constants import ROOT
from tests.support.e2e import new_connector
from worker import pending_triggers
from worker.beat import entry_name

pytestmark = pytest.mark.integration


def test_next_sync_is_last_trigger_plus_interval_and_stable(fleet, fleet_engine, simulator, tmp_path):
    sim = simulator()
    hourly = new_connector(fleet, sim)  # interval = "1h"
    yearly = new_connector(fleet, sim, 'cron = "0 0 1 1 *"')
    fleet.connectors[yearly] = fleet.connectors[yearly].replace('interval = "1h"\n', "")
    fleet.write_config()
    log = open(tmp_path / "beat.log", "wb")
    beat_started = datetime.now(timezone.utc)
    beat = subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=fleet.env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        # A new entry is due at once: beat triggers both, then each waits for its schedule.
        deadline = time.monotonic() + 60
        while not all(triggered_at(fleet_engine, name) for name in (hourly, yearly)):
            assert time.monotonic() < deadline, "beat did not trigger the new connectors"
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            time.sleep(0.5)
        # Each trigger's task, once started, told beat it may send the next (worker.pending_triggers).
        marks = redis.Redis.from_url(fleet.broker_url)
        assert not [name for name in (hourly, yearly) if marks.exists(pending_triggers.key(entry_name(name)))]
        first = next_syncs(fleet, hourly, yearly)
        time.sleep(2.5)  # the clock moves on; the next sync must not
        assert next_syncs(fleet, hourly, yearly) == first
        started = triggered_at(fleet_engine, hourly)
        assert started is not None
        # Beat triggered it after it started and before the run started: an hour after that trigger.
        hour = timedelta(hours=1)
        assert beat_started + hour <= first[hourly] <= started + hour, (beat_started, started, first)
        assert first[hourly] > datetime.now(timezone.utc)
        assert first[yearly] == datetime(datetime.now(timezone.utc).year + 1, 1, 1, tzinfo=timezone.utc)
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        log.close()


def next_syncs(fleet, *names: str) -> dict[str, datetime]:
    """``status --json``'s ``next_sync_at`` of each connector."""
    shown = json.loads(subprocess.run([sys.executable, "-m", "cli", "status", "--json"], env=fleet.env, cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout)
    found = {entry["connector"]: entry["next_sync_at"] for entry in shown if entry["connector"] in names}
    assert all(found.get(name) for name in names), found
    return {name: datetime.fromisoformat(found[name]) for name in names}


def triggered_at(engine, connector: str) -> datetime | None:
    """When the first run beat triggered for ``connector`` started."""
    from sqlalchemy import select
    from sqlmodel import Session

    from models.tables import Connector, SyncRun

    with Session(engine) as session:
        started = session.execute(select(SyncRun.started_at).join(Connector).where(
            Connector.name == connector, SyncRun.trigger == "schedule").order_by(SyncRun.id)).scalars().first()
    if started is None:
        return None
    return started if started.tzinfo else started.replace(tzinfo=timezone.utc)
