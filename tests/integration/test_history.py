"""Change history: exact records of what changed, nothing for a baseline or an unchanged sync, request-tagged
rows for provisioning, pruning (SQLite and PostgreSQL; simulator over HTTP)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from models import history
from models.tables import utcnow
from provisioning import requests, runner
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def summary(rows):
    return {(r["change"], r["subject"], r["resource_type"], r["resource_id"], r["principal_id"]) for r in rows}


def test_history_records_exactly_what_changed(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    assert history.changes(engine, NAME) == []  # the first sync is the baseline
    dump = sim.dump()
    mover = next(u for u in dump["users"] if u.get("department") not in (None, "", "Finance"))
    leaver = dump["users"][3]["_id"]
    group = next(g for g in dump["groups"] if leaver not in g["members"] and g["members"])
    sim.api("PUT", f"/api/systemusers/{mover['_id']}", json={"department": "Finance"})
    sim.delete_user(leaver)
    newcomer = sim.create_user("history.new")["_id"]
    sim.group_member(group["id"], newcomer, "add")
    run = run_sync(settings, engine)
    rows = history.changes(engine, NAME)
    got = summary(rows)
    assert ("updated", "resource", "user", mover["_id"], None) in got
    assert ("deleted", "resource", "user", leaver, None) in got
    assert ("created", "resource", "user", newcomer, None) in got
    assert ("created", "grant", "group", group["id"], newcomer) in got
    left = {g["id"] for g in dump["groups"] if leaver in g["members"]}
    assert {(r[3]) for r in got if r[:3] == ("deleted", "grant", "group") and r[4] == leaver} == left
    update = next(r for r in rows if r["change"] == "updated" and r["resource_id"] == mover["_id"])
    assert update["fields"]["profile.department"] == [mover["department"].strip(), "Finance"]
    assert set(update["fields"]) == {"profile.department"}  # only what changed is stored
    assert {r["run_id"] for r in rows} == {run.run_id}

    assert run_sync(settings, engine).status == "succeeded"
    assert len(history.changes(engine, NAME)) == len(rows)  # an unchanged sync adds nothing

    # A provisioning request's write-through is recorded with its request id.
    user = next(u["_id"] for u in sim.dump()["users"] if u["_id"] not in group["members"] and u["_id"] != newcomer)
    rid = requests.accept(engine, settings, connector=NAME, action="group.add-member",
                          params={"group": group["id"], "user": user}).request["id"]
    assert runner.execute(engine, settings, rid, "t1").status == "succeeded"
    tagged = [r for r in history.changes(engine, NAME) if r["request_id"] == rid]
    via = {("created", "grant", "app", a["_id"], user) for a in sim.dump()["apps"] if group["id"] in a["groups"]}
    assert summary(tagged) == {("created", "grant", "group", group["id"], user)} | via  # and access through it
    assert len(history.changes(engine, NAME, since=utcnow() - timedelta(minutes=5), resource_type="user")) == 3

    assert history.prune(engine, utcnow() - timedelta(days=1)) == 0
    assert history.prune(engine, utcnow() + timedelta(seconds=1)) == len(rows) + len(tagged)
    assert history.changes(engine, NAME) == []


def test_changes_command(engine, db_url, simulator, tmp_path, monkeypatch, terminal):
    from cli.main import app
    from config.settings import SettingsCache
    from worker import runtime

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    run_sync(settings, engine)
    sim.suspend_user(sim.dump()["users"][0]["_id"])
    run_sync(settings, engine)
    config = tmp_path / "jumpsync.toml"
    config.write_text("")
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", db_url)
    monkeypatch.setattr(runtime, "_settings", SettingsCache(config))
    result = CliRunner().invoke(app, ["changes", NAME, "--since", "1h", "--type", "user", "--json"])
    assert result.exit_code == 0, result.output
    assert '"profile.account_locked"' not in result.output and '"status"' in result.output
    assert CliRunner().invoke(app, ["changes", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["changes", NAME, "--since", "yesterday"]).exit_code == 2

    from cli import output

    everything = json.loads(CliRunner().invoke(app, ["changes", NAME, "--json"]).output)
    piped = CliRunner().invoke(app, ["changes", NAME])
    assert piped.stdout.splitlines()[0] == "at\tby\tchange\twhat\tdetails"
    assert len(piped.stdout.splitlines()) == 1 + len(everything)
    terminal(250)
    table = CliRunner().invoke(app, ["changes", NAME])
    assert table.exit_code == 0 and everything and "more changes" not in table.output
    monkeypatch.setattr(output, "TABLE_ROWS", 0)  # a long table shows its first rows and says how many more
    table = CliRunner().invoke(app, ["changes", NAME])
    assert table.exit_code == 0
    assert len(everything) == 1 and "… and 1 more change (--json lists them all" in table.output  # not "changes"


def test_changes_after_a_first_sync_says_what_it_stored(engine, db_url, simulator, tmp_path, monkeypatch, terminal):
    """The first sync records no history (its baseline); ``changes`` says what it stored and that history starts
    there, never "no changes" when hundreds of accounts appeared."""
    from cli.main import app
    from config.settings import SettingsCache
    from worker import runtime

    sim = simulator()
    settings = make_settings(db_url, sim.url)
    first = run_sync(settings, engine)
    dump = sim.dump()
    config = tmp_path / "jumpsync.toml"
    config.write_text("")
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", db_url)
    monkeypatch.setattr(runtime, "_settings", SettingsCache(config))
    terminal(250)
    result = CliRunner().invoke(app, ["changes", NAME])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"first sync (run {first.run_id}, ")
    assert f"stored {len(dump['users'])} users, {len(dump['admins'])} admins, {len(dump['groups'])} groups" in lines[0]
    assert lines[0].endswith(" grants: history starts there (resources and grants list them)")
    assert lines[1:] == [f"no changes since run {first.run_id}"]
    typed = CliRunner().invoke(app, ["changes", NAME, "--type", "user", "-o", "tsv"])
    assert typed.stdout == ""  # a pipe reads rows only (none here): the notes are on stderr
    assert f"stored {len(dump['users'])} users: history starts there" in typed.stderr
    assert "no changes since" in typed.stderr
    assert CliRunner().invoke(app, ["changes", NAME, "--json"]).stdout == "[]\n"

    mover = dump["users"][0]["_id"]
    sim.suspend_user(mover)
    before = utcnow()
    second = run_sync(settings, engine)
    later = CliRunner().invoke(app, ["changes", NAME]).stdout.splitlines()
    assert later[0].startswith(f"first sync (run {first.run_id}, ") and f"run {second.run_id}" in later[-1]
    recent = CliRunner().invoke(app, ["changes", NAME, "--since", before.isoformat()]).stdout
    assert "first sync" not in recent and "updated" in recent  # the window starts after the baseline

