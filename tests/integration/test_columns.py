"""Timestamp columns read back as aware UTC datetimes on both databases (models.columns.UTCDateTime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlmodel import Session

from models.tables import Connector, SyncRun


def test_a_moment_reads_back_aware_in_utc_also_through_an_aggregate(engine):
    paris = timezone(timedelta(hours=1))
    with Session(engine) as session:
        connector = Connector(name="acme", base_url="https://console.jumpcloud.com")
        session.add(connector)
        session.flush()
        session.add(SyncRun(connector_id=connector.id, status="succeeded", trigger="manual",
                            started_at=datetime(2026, 3, 1, 9, 0, tzinfo=paris),
                            finished_at=datetime(2026, 3, 1, 8, 30)))  # naive: taken as UTC
        session.commit()
    with Session(engine) as session:
        run = session.execute(select(SyncRun)).scalar_one()
        latest = session.execute(select(func.max(SyncRun.finished_at))).scalar_one()
    assert run.started_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC) and run.started_at.tzinfo is UTC
    assert run.finished_at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert latest.tzinfo is UTC and latest == run.finished_at
