"""The shared output layer through the real commands (cli/output.py): nothing is cut short in a pipe or a
machine format, ``-o`` is the format in every command, and a table at 80 columns splits no id or email.

The tenant has JumpCloud-shaped ids (24 hex digits) and long emails: 52 inactive users who hold Slack, so the
report has 52 ``inactive_user_app_access`` findings, more than the 50 of a kind its table shows.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, ProvisioningRequest

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
USERS = 52
SLACK = "5a0b1c2d3e4f5a6b7c8d9e0f"


def user_id(number: int) -> str:
    return f"568995ee99d026a7762a{number:04x}"


def email(number: int) -> str:
    return f"dana.konstantinou{number}@example.com"


@pytest.fixture
def engine(tmp_path):
    """SQLite only: what is printed does not depend on the database (test_access.py covers both)."""
    from models.db import make_engine
    from models.migrate import upgrade

    db = make_engine(f"sqlite:///{tmp_path / 'jumpsync.db'}")
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def tenant(engine):
    with Session(engine) as session:
        row = Connector(name="acme", base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        cid = row.id
    ResourceWriter(engine, cid, "user", NOW).write(
        [ResourceRecord("user", user_id(n), f"Dana Konstantinou {n}", email(n), ("suspended", "staged")[n % 2],
                        {"username": f"user{n}"}) for n in range(USERS)])
    ResourceWriter(engine, cid, "app", NOW).write([ResourceRecord("app", SLACK, "Slack", status="active")])
    GrantWriter(engine, cid, "app", "app", NOW).write_scopes(
        {SLACK: [GrantRecord("app", SLACK, "access", "user", user_id(n)) for n in range(USERS)]})
    return engine


def inactive(rows: list[str]) -> list[str]:
    return [row for row in rows if "inactive_user_app_access" in row]


@pytest.mark.parametrize("rendering", ["live", "stored"])
def test_report_gives_every_finding_in_a_pipe_and_in_every_machine_format(run, tenant, terminal, rendering):
    from access.snapshots import refresh

    if rendering == "stored":
        assert refresh(tenant, "acme").outcome == "rendered"
    piped = run("report", "acme")
    assert piped.exit_code == 0, piped.output
    lines = piped.stdout.splitlines()
    assert lines[0] == "kind\tsubject\trelated\tvia\tdetail"
    assert len(inactive(lines)) == USERS and "more" not in piped.output  # the note is not the rows
    assert f"inactive_user_app_access     {USERS}" in piped.stderr
    assert len(inactive(run("report", "acme", "-o", "tsv").stdout.splitlines())) == USERS
    table_in_a_pipe = run("report", "acme", "-o", "table").stdout  # no terminal: every row too
    assert [n for n in range(USERS) if user_id(n) in table_in_a_pipe] == list(range(USERS))

    for args in (("-o", "json"), ("--json",)):
        as_json = run("report", "acme", *args)
        assert as_json.exit_code == 0, as_json.output
        findings = json.loads(as_json.stdout)["findings"]
        assert len([f for f in findings if f["kind"] == "inactive_user_app_access"]) == USERS
    as_csv = run("report", "acme", "-o", "csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0][:3] == ["kind", "subject_type", "subject_id"]
    assert len([r for r in rows if r[0] == "inactive_user_app_access"]) == USERS

    old = run("report", "acme", "--format", "csv")  # the old spelling: still the same CSV, with a warning
    assert old.exit_code == 0 and old.stdout == as_csv.stdout
    assert "--format csv is deprecated" in old.stderr and "use -o csv" in old.stderr
    old_default = run("report", "acme", "--format", "table")  # was the default: still TSV in a pipe
    assert old_default.stdout == piped.stdout and "--format table is deprecated" in old_default.stderr

    terminal(250)  # only a table at a terminal is cut short, and it says so there
    table = run("report", "acme")
    assert table.exit_code == 0, table.output
    assert len([n for n in range(USERS) if user_id(n) in table.stdout]) == 50
    assert "… and 2 more inactive_user_app_access findings (-o csv or -o json lists them all)" in table.stdout


def test_lists_in_a_pipe_have_every_row(run, tenant, monkeypatch, terminal):
    from cli import output

    with Session(tenant) as session:
        session.add_all([ProvisioningRequest(id=f"{n:032x}", connector="acme", action="group.add-member",
                                             params={"group": "g1", "user": "u1"}, status="succeeded")
                         for n in range(60)])
        session.commit()
    piped = run("requests")
    assert piped.exit_code == 0, piped.output
    assert len(piped.stdout.splitlines()) == 1 + 60
    assert len(json.loads(run("requests", "--json").stdout)) == 60
    assert len(run("requests", "--limit", "7", "-o", "csv").stdout.splitlines()) == 1 + 7  # asked for
    events = json.loads(run("audit", "-o", "json").stdout)  # audit takes -o as every listing does
    assert len(events) == 60 and {e["kind"] for e in events} == {"submitted"}
    assert len(run("audit", "-o", "csv").stdout.splitlines()) == 1 + 60
    monkeypatch.setattr(output, "TABLE_ROWS", 20)
    assert len(run("resources", "acme", "-o", "wide").stdout.splitlines()) == 2 + USERS + 1  # a pipe: all
    assert len(run("audit").stdout.splitlines()) == 1 + 60
    terminal(250)
    table = run("requests")
    assert "… and 40 more requests (--json lists them all" in table.stdout
    assert "… and 40 more events (--json lists them all" in run("audit").stdout


def test_o_is_the_format_of_every_listing_csv_included(run, tenant):
    result = run("resources", "acme", "--type", "user", "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["type", "id", "name", "email", "status", "deleted"]
    assert rows[1] == ["user", user_id(0), "Dana Konstantinou 0", email(0), "suspended", ""]
    assert len(rows) == 1 + USERS
    assert run("grants", "acme", "-o", "csv").stdout.splitlines()[0] == "resource,entitlement,principal,via,deleted"


def test_export_o_is_the_format_and_the_file_is_file(run, tenant, tmp_path, monkeypatch):
    from access.export import export

    monkeypatch.chdir(tmp_path)
    as_json = run("export", "acme", "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == export(tenant, "acme") and len(json.loads(as_json.stdout)) == USERS
    assert not (tmp_path / "json").exists() and as_json.stderr == ""
    assert run("export", "acme", "-o", "csv").stdout.splitlines()[0].startswith("principal_type,principal_id,")

    written = run("export", "acme", "-o", "json", "--file", "review.json")
    assert written.exit_code == 0 and written.stdout == "" and "wrote 52 grants to review.json" in written.stderr
    assert json.loads((tmp_path / "review.json").read_text()) == export(tenant, "acme")
    assert run("export", "acme", "-f", "short.csv").exit_code == 0
    assert (tmp_path / "short.csv").read_text().startswith("principal_type,")

    old = run("export", "acme", "-o", "old.csv")  # -o FILE, the old spelling: still writes the file, and warns
    assert old.exit_code == 0 and old.stdout == ""
    assert (tmp_path / "old.csv").read_text() == (tmp_path / "short.csv").read_text()
    assert "warning: -o FILE (-o old.csv) is deprecated" in old.stderr and "--file old.csv" in old.stderr
    old_json = run("export", "acme", "--format", "json", "--output", "old.json")
    assert old_json.exit_code == 0 and json.loads((tmp_path / "old.json").read_text()) == export(tenant, "acme")
    assert "--format json is deprecated" in old_json.stderr

    refused = run("export", "acme", "-o", "tsv")
    assert refused.exit_code == 2 and "this command writes csv or json" in refused.stderr
    assert run("export", "acme", "-o", "x.csv", "--file", "y.csv").exit_code == 2
    assert run("export", "acme", "--format", "csv", "-o", "json").exit_code == 2
    assert not (tmp_path / "tsv").exists() and not (tmp_path / "y.csv").exists()


def _whole(values: list[str], text: str) -> None:
    """Each value appears whole on a line of ``text``: a double-click copies it."""
    lines = text.splitlines()
    split = [value for value in values if not any(value in line for line in lines)]
    assert not split, f"split across lines: {split[:3]}\n{text[:2000]}"


def test_a_table_at_80_columns_splits_no_id_or_email(run, tenant, terminal):
    terminal(80)
    result = run("resources", "acme")
    assert result.exit_code == 0, result.output
    _whole([user_id(n) for n in range(USERS)] + [email(n) for n in range(USERS)] + [SLACK], result.stdout)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80

    users = run("resources", "acme", "--type", "user")  # type is user in every row: it goes first
    assert users.stdout.split()[:3] == ["id", "name", "email"]
    assert "not shown at 80 columns: type (user in every row), status, deleted (empty)" in users.stderr
    assert "--wide shows every column" in users.stderr

    who = run("who-has", "acme", "app:Slack")
    assert who.exit_code == 0, who.output
    _whole([user_id(n) for n in range(USERS)], who.stdout)
    wide = run("resources", "acme", "--type", "user", "--wide")
    assert wide.stdout.split()[:6] == ["type", "id", "name", "email", "status", "deleted"] and wide.stderr == ""


def test_status_at_80_columns_says_which_columns_it_leaves_out(run, tenant, terminal, monkeypatch):
    from jumpsync import status as status_document

    monkeypatch.setattr(status_document, "next_syncs", lambda names: [None for _ in names])
    terminal(80)
    result = run("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:2] == ["connector", "last"]
    note = next(line for line in result.stderr.splitlines() if line.startswith("not shown at 80 columns: "))
    for header in ("last success", "provisioning", "events"):
        assert header in note or header in result.stdout.splitlines()[0]


def test_report_piped_from_a_real_process_has_every_finding(tenant, tmp_path):
    """The same through a real pipe: ``jumpsync report acme > audit.tsv`` keeps every finding."""
    import os
    import subprocess
    import sys

    from tests.support.constants import ROOT

    config = tmp_path / "jumpsync.toml"
    config.write_text('[[connectors]]\nname = "acme"\napi_key_env = "ACME_KEY"\n')
    env = {**os.environ, "JUMPSYNC_CONFIG": str(config), "PYTHONPATH": str(ROOT),
           "JUMPSYNC_DATABASE_URL": tenant.url.render_as_string(hide_password=False)}
    env.pop("TTY_COMPATIBLE", None)
    env.pop("COLUMNS", None)
    done = subprocess.run([sys.executable, "-m", "cli", "report", "acme"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert len(inactive(done.stdout.splitlines())) == USERS
