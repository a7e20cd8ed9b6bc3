"""The status moves of runs and parts go through models.states: a move the state machines do not list is
refused before anything is written (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session, col

from models.connectors import registered_connector_id
from models.states import IllegalTransition, PartStatus, RunStatus, Trigger
from models.tables import SyncPart, SyncRun
from pipeline import sync
from pipeline.claims import claim_part, end_part
from pipeline.events_runs import end_events_run, open_events_run
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def statuses(engine, run_id: int) -> tuple[str, dict[str, tuple[str, int]]]:
    with Session(engine) as session:
        run = session.execute(select(col(SyncRun.status)).where(col(SyncRun.id) == run_id)).scalar_one()
        parts = {name: (status, attempt) for name, status, attempt in session.execute(
            select(col(SyncPart.name), col(SyncPart.status), col(SyncPart.attempt))
            .where(col(SyncPart.run_id) == run_id))}
    return run, parts


def test_a_part_cannot_end_back_in_pending_and_nothing_is_written(engine, db_url):
    settings = make_settings(db_url, "http://127.0.0.1:9")  # no request is made
    started = sync.begin(settings, engine, NAME, trigger=Trigger.MANUAL)
    claim = claim_part(engine, started.run_id, "user")
    assert claim.attempt == 1
    before = statuses(engine, started.run_id)
    with pytest.raises(IllegalTransition, match="running -> pending"):
        end_part(engine, started.run_id, "user", claim.attempt, status=PartStatus.PENDING)
    assert statuses(engine, started.run_id) == before
    assert before[1]["user"] == (PartStatus.RUNNING, 1)
    assert end_part(engine, started.run_id, "user", claim.attempt, status=PartStatus.SUCCEEDED)


def test_an_incremental_run_cannot_end_partial_and_nothing_is_written(engine, db_url):
    settings = make_settings(db_url, "http://127.0.0.1:9")
    connector_id = registered_connector_id(engine, settings.connector(NAME))
    run_id = open_events_run(engine, connector_id)
    assert run_id is not None
    with pytest.raises(IllegalTransition, match="running -> partial"):
        end_events_run(engine, run_id, status=RunStatus.PARTIAL, counts={"x": 1}, requests=3)
    with pytest.raises(IllegalTransition):
        end_events_run(engine, run_id, status=RunStatus.FINALIZING, counts={}, requests=0)
    assert statuses(engine, run_id) == (RunStatus.RUNNING, {"events": (PartStatus.RUNNING, 1)})
    assert end_events_run(engine, run_id, status=RunStatus.SUCCEEDED, counts={}, requests=1)
    assert statuses(engine, run_id) == (RunStatus.SUCCEEDED, {"events": (PartStatus.SUCCEEDED, 1)})
