"""The CLI's read commands print exactly what they printed before: their JSON (docs/cli-json.md) and their
tab-separated tables, byte for byte, on a hand-built SQLite database.

The expected outputs are files in ``cli_golden/``; ``JUMPSYNC_WRITE_GOLDEN=1`` writes them from the code as it
is (only when an output is meant to change, and the change is documented).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlmodel import Session

from models.tables import (
    Change,
    EventCursor,
    Grant,
    ProvisioningRequest,
    Resource,
    SyncPart,
    SyncRun,
)
from tests.support.databases import add_connector

GOLDEN = Path(__file__).parent / "cli_golden"
T0 = datetime(2026, 11, 30, 8, 5, 9, tzinfo=timezone.utc)
#: The one value that depends on the clock: how old the incremental cursor is now.
CURSOR_AGE = re.compile(r'"cursor_age_seconds": [0-9.]+')


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _resource(cid: int, rtype: str, rid: str, name: str, **fields) -> Resource:
    return Resource(connector_id=cid, type=rtype, external_id=rid, name=name, name_key=name.lower(),
                    content_hash="x", first_seen_at=_at(0), updated_at=_at(1), **fields)


def _grant(cid: int, rtype: str, rid: str, entitlement: str, ptype: str, pid: str, **fields) -> Grant:
    return Grant(connector_id=cid, resource_type=rtype, resource_id=rid, entitlement=entitlement, principal_type=ptype,
                 principal_id=pid, source=rtype, first_seen_at=_at(0), **fields)


def _populate(engine) -> None:
    cid = add_connector(engine, "acme")
    old = add_connector(engine, "old")  # in the database, not in the config file
    with Session(engine) as session:
        session.add_all([
            _resource(cid, "user", "u1", "Alice", email="alice@example.com", status="active",
                      profile={"username": "alice"}),
            _resource(cid, "user", "u2", "Bob", email="bob@example.com", status="suspended", deleted_at=_at(30),
                      profile={"username": "bob"}),
            _resource(cid, "admin", "a1", "Alice Admin", email="alice@example.com", status="active",
                      linked_user_id="u1"),
            _resource(cid, "group", "g1", "Engineering", profile={"description": "builders"}),
            _resource(cid, "app", "p1", "Slack", status="active"),
            _resource(cid, "role", "help-desk", "Help Desk"),
            _resource(old, "group", "g9", "Old group"),
            _grant(cid, "group", "g1", "member", "user", "u1"),
            _grant(cid, "group", "g1", "member", "user", "u2", deleted_at=_at(30)),
            _grant(cid, "app", "p1", "access", "user", "u1", via="g1"),
            _grant(cid, "app", "p1", "access", "group", "g1"),
            _grant(cid, "role", "help-desk", "assigned", "admin", "a1"),
        ])
        good = SyncRun(connector_id=cid, status="succeeded", trigger="schedule", task_id="task-1",
                       started_at=_at(0), finished_at=_at(2))
        held = SyncRun(connector_id=cid, status="partial", trigger="manual", task_id="task-2",
                       started_at=_at(10), finished_at=_at(12), error="deletions held: group")
        skipped = SyncRun(connector_id=cid, status="skipped", trigger="schedule", task_id="task-3",
                          started_at=_at(11), finished_at=_at(11), error="another run is active")
        refresh = SyncRun(connector_id=cid, status="succeeded", trigger="events", task_id="task-4",
                          started_at=_at(20), finished_at=_at(21))
        old_run = SyncRun(connector_id=old, status="failed", trigger="schedule", task_id="task-5",
                          started_at=_at(3), finished_at=_at(4), error="401 Unauthorized")
        session.add_all([good, held, skipped, refresh, old_run])
        session.flush()
        session.add_all([
            SyncPart(run_id=good.id, name="user", phase="fetch", status="succeeded", attempt=1, started_at=_at(0),
                     finished_at=_at(1), requests=3, counts={"seen": 2, "created": 2}),
            SyncPart(run_id=good.id, name="group", phase="fetch", status="succeeded", attempt=1,
                     started_at=_at(0), finished_at=_at(1), requests=2, counts={"seen": 1, "grants_seen": 2}),
            SyncPart(run_id=good.id, name="admins", phase="derive", status="succeeded", attempt=1,
                     started_at=_at(1), finished_at=_at(2), counts={"admins_linked": 1}),
            SyncPart(run_id=held.id, name="user", phase="fetch", status="succeeded", attempt=1,
                     started_at=_at(10), finished_at=_at(11), requests=3, counts={"seen": 2}),
            SyncPart(run_id=held.id, name="group", phase="fetch", status="held", attempt=2, started_at=_at(10),
                     finished_at=_at(11), requests=2, counts={"seen": 0}, error="would delete 1 of 1 groups"),
            SyncPart(run_id=old_run.id, name="user", phase="fetch", status="failed", attempt=3,
                     started_at=_at(3), finished_at=_at(4), requests=1, error="401 Unauthorized"),
            Change(connector_id=cid, run_id=good.id, at=_at(1), subject="resource", change="updated",
                   resource_type="user", resource_id="u1", fields={"status": ["staged", "active"]}),
            Change(connector_id=cid, run_id=good.id, at=_at(1), subject="grant", change="created",
                   resource_type="app", resource_id="p1", entitlement="access", principal_type="user",
                   principal_id="u1", via="g1"),
            Change(connector_id=cid, request_id="r4", at=_at(4), subject="grant", change="deleted",
                   resource_type="group", resource_id="g1", entitlement="member", principal_type="user",
                   principal_id="u-gone"),  # a principal the database has no row of: its id stands alone
            EventCursor(connector_id=cid, cursor=_at(19), refreshed_at=_at(21), outcome="applied", run_id=refresh.id,
                        requests=4, events=7, reads=2, lag_seconds=12.5, seen={}),
        ])
        for number, (state, attempts) in enumerate((("pending", 0), ("running", 1), ("failed", 3),
                                                   ("failed", 2), ("succeeded", 1))):
            session.add(ProvisioningRequest(id=f"r{number}", connector="acme", action="group.add-member",
                                            params={"group": "g1", "user": "u1"}, status=state, attempts=attempts,
                                            created_at=_at(number), updated_at=_at(number)))
        session.commit()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'jumpsync.db'}"


@pytest.fixture(autouse=True)
def _utc_clock(monkeypatch):
    """Tables show local times: the expected ones are in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def cli(sqlite_url, tmp_path, monkeypatch):
    from models.db import make_engine
    from models.migrate import upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine)
    _populate(engine)
    engine.dispose()
    from typer.testing import CliRunner

    from cli import main as cli_main
    from config.settings import SettingsCache
    from jumpsync import status as status_document
    from models.db import get_engine
    from worker import runtime
    from worker.celery_app import app as celery_app

    config = tmp_path / "jumpsync.toml"
    config.write_text('[[connectors]]\nname = "acme"\napi_key_env = "ACME_KEY"\n'
                      '[[connectors]]\nname = "beta"\napi_key_env = "ACME_KEY"\n')
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(config))
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", sqlite_url)
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    monkeypatch.setattr(status_document, "next_syncs", lambda names: [
        "2026-12-01T00:00:00+00:00" if name == "acme" else None for name in names])
    # ``sync --wait`` finds the run its task opened: the task id is a finished run's.
    monkeypatch.setattr(celery_app, "send_task", lambda *args, **kwargs: SimpleNamespace(id="task-2"))
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_main.app, list(args))
    get_engine(sqlite_url).dispose()


COMMANDS = {
    "resources.json": ("resources", "acme", "--json"),
    "resources-live.json": ("resources", "acme", "--live", "--json"),
    "resources.tsv": ("resources", "acme", "-o", "tsv"),
    "grants.json": ("grants", "acme", "--json"),
    "grants.tsv": ("grants", "acme", "-o", "tsv"),
    "changes.json": ("changes", "acme", "--json"),
    "changes.tsv": ("changes", "acme", "-o", "tsv"),
    "status.json": ("status", "--json"),
    "status.tsv": ("status", "-o", "tsv"),
    "sync-wait.json": ("sync", "acme", "--wait", "--json"),
    "sync-wait.txt": ("sync", "acme", "--wait"),
    "deletions-held.json": ("deletions", "held", "--json"),
    "deletions-held.tsv": ("deletions", "held", "-o", "tsv"),
}


@pytest.mark.parametrize("golden", sorted(COMMANDS))
def test_read_commands_print_what_they_printed_before(cli, golden):
    result = cli(*COMMANDS[golden])
    assert result.exit_code in (0, 1), result.output  # sync --wait exits 1: the run was partial
    printed = CURSOR_AGE.sub('"cursor_age_seconds": AGE', result.stdout)
    path = GOLDEN / golden
    if os.environ.get("JUMPSYNC_WRITE_GOLDEN"):
        path.write_text(printed)
    assert printed == path.read_text()


def test_grants_and_changes_tables_name_what_ids_refer_to(cli, terminal):
    """A table at a terminal reads ``kind:Name`` where the rows hold ids; ``--wide`` adds the ids."""
    terminal(200)
    table = cli("grants", "acme")
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.stdout.splitlines()]
    assert ["app:Slack", "access", "user:Alice", "group:Engineering"] in lines
    assert ["role:Help", "Desk", "assigned", "admin:Alice", "Admin"] in lines
    assert "(g1)" not in table.stdout and "u1" not in table.stdout
    wide = cli("grants", "acme", "--wide")
    assert ["app:Slack", "(p1)", "access", "user:Alice", "(u1)", "group:Engineering", "(g1)"] in [
        line.split() for line in wide.stdout.splitlines()]
    changes = cli("changes", "acme")
    assert changes.exit_code == 0, changes.output
    assert "app:Slack access user:Alice via group:Engineering" in changes.stdout
    assert "group:Engineering member user:u-gone" in changes.stdout  # no name stored: the id
    assert "user:Alice (u1)" in cli("changes", "acme", "-o", "wide").stdout
