"""``jumpsync runs cancel``: an operator frees a connector whose run nothing will move on (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from auth import local
from models.states import PartStatus, RunStatus, Trigger
from pipeline import sync
from pipeline.claims import claim_part, end_part
from tests.support.direct_sync import NAME, make_settings
from tests.support.runs import latest_run


@pytest.fixture
def settings(run, engine, db_url, tmp_path, monkeypatch):
    """The ``run`` fixture's config with the direct-sync connector, and the CLI's login ``carol``."""
    (tmp_path / "jumpsync.toml").write_text(f'[[connectors]]\nname = "{NAME}"\napi_key_env = "ACME_KEY"\n')
    monkeypatch.setenv("ACME_KEY", "k")
    monkeypatch.setattr(local, "login_name", lambda: "carol")
    return make_settings(db_url, "http://127.0.0.1:9")  # no request is made


def test_cancel_fails_the_run_records_who_and_frees_the_connector(run, engine, settings):
    started = sync.begin(settings, engine, NAME, trigger=Trigger.MANUAL)
    attempt = claim_part(engine, started.run_id, "user").attempt  # a part running on a worker that is gone
    assert sync.begin(settings, engine, NAME, trigger=Trigger.MANUAL).skipped  # the connector is taken

    cancelled = run("runs", "cancel", str(started.run_id), "--reason", "DB outage, OPS-7")
    assert cancelled.exit_code == 0, cancelled.output
    assert f"run {started.run_id} of {NAME} cancelled" in cancelled.stdout
    ended = latest_run(engine, NAME)
    assert ended.status == RunStatus.FAILED and ended.error == "cancelled by cli:carol: DB outage, OPS-7"
    assert {p.status for p in ended.parts} == {PartStatus.FAILED}
    assert not end_part(engine, started.run_id, "user", attempt, status=PartStatus.SUCCEEDED)  # records nothing
    assert not sync.begin(settings, engine, NAME, trigger=Trigger.MANUAL).skipped  # free again

    again = run("runs", "cancel", str(started.run_id))
    assert again.exit_code == 2 and "has already ended (failed)" in again.stderr
    unknown = run("runs", "cancel", "999999")
    assert unknown.exit_code == 2 and "no run 999999" in unknown.stderr
