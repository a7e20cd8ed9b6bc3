"""The read-only commands (access, who-has, report, export, changes) start without what they do not use.

Each of them is run in a fresh interpreter, as a person runs ``jumpsync``, on a small migrated SQLite database;
the test then looks at ``sys.modules``. Celery, kombu and httpx (the worker, the broker and the API client),
Alembic (loaded only when the schema is not at ``models.migrate.HEAD``) and the provisioning models each cost
start-up time that these commands would pay on every run (docs/access.md, "Start-up"). Timings belong to the
benchmark (bench/access_bench.py); this only keeps the imports from coming back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Modules (and their submodules) that must not be loaded by the read-only commands.
UNWANTED = ("celery", "kombu", "httpx", "alembic", "jumpcloud", "provisioning.params", "provisioning.resolve",
            "connector.users", "pipeline", "worker.celery_app")

COMMANDS = [
    ["access", "acme", "alice", "--json"],
    ["access", "acme", "u1"],
    ["who-has", "acme", "group:Engineering", "--json"],
    ["who-has", "acme", "group:g1"],
    ["report", "acme", "--format", "json"],
    ["report", "acme", "--format", "csv"],
    ["report", "acme"],
    ["export", "acme", "--format", "csv"],
    ["export", "acme", "--format", "json"],
    ["changes", "acme", "--json"],
]

# Runs one command through the real entry point and prints what it loaded; click's exit becomes the code.
CHILD = """
import json, sys
from cli.main import main
sys.argv = ["jumpsync", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print("\\nMODULES " + json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A migrated SQLite database with one connector, a user in a group and with an app, and an empty config."""
    from sqlmodel import Session

    from connector.records import GrantRecord, ResourceRecord
    from models.db import make_engine
    from models.migrate import upgrade
    from models.store import GrantWriter, ResourceWriter
    from models.tables import Connector

    directory = tmp_path_factory.mktemp("startup")
    url = f"sqlite:///{directory / 'jumpsync.db'}"
    engine = make_engine(url)
    upgrade(engine)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with Session(engine) as session:
        row = Connector(name="acme", base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        cid = row.id
    ResourceWriter(engine, cid, "user", now).write(
        [ResourceRecord("user", "u1", "Alice", "alice@example.com", "suspended", {"username": "alice"})])
    ResourceWriter(engine, cid, "group", now).write([ResourceRecord("group", "g1", "Engineering")])
    ResourceWriter(engine, cid, "app", now).write([ResourceRecord("app", "a1", "Wiki", status="active")])
    GrantWriter(engine, cid, "group", "group", now).write_scopes(
        {"g1": [GrantRecord("group", "g1", "member", "user", "u1")]})
    GrantWriter(engine, cid, "app", "app", now).write_scopes(  # a suspended user's app: a report finding
        {"a1": [GrantRecord("app", "a1", "access", "user", "u1")]})
    engine.dispose()
    config = directory / "jumpsync.toml"
    config.write_text("")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPSYNC_")}
    child_env.update({"JUMPSYNC_CONFIG": str(config), "JUMPSYNC_DATABASE_URL": url, "PYTHONPATH": str(ROOT)})
    return child_env


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_read_only_command_loads_no_worker_broker_client_or_migrations(env, argv):
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert "MODULES " in done.stdout, done.stderr
    output, _, report = done.stdout.rpartition("MODULES ")
    result = json.loads(report)
    assert result["exit"] == 0, (output, done.stderr)
    assert "u1" in output or "no changes" in output or "[]" in output, output  # it did answer
    loaded = [m for m in result["modules"] if any(m == u or m.startswith(u + ".") for u in UNWANTED)]
    assert loaded == [], f"{' '.join(argv)} imported {loaded}"
