"""The provisioning commands: provision, requests (list, show, retry) and provision-bulk.

No broker: JUMPSYNC_BROKER_URL points at a loopback port where nothing listens, so every enqueue fails and a
valid request must stay recorded as ``pending`` (for the relay): nothing accepted is lost. Each test has its
own SQLite database and config file.
"""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console
from sqlmodel import Session
from typer.testing import CliRunner

from auth import local
from cli import common, provision
from cli import main as cli

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"

CONFIG = """
[[connectors]]
name = "acme"
api_key_env = "ACME_KEY"

[[connectors]]
name = "beta"
api_key_env = "BETA_KEY"
[connectors.provisioning]
allowed_actions = ["user.delete", "user.suspend", "user.create"]
dry_run = true
"""


def migrate(database_url: str) -> None:
    """What ``jumpsync db upgrade`` does before any other command touches a new database."""
    from models.db import make_engine

    try:
        from models.migrate import upgrade
    except ImportError:  # a tree without migrations: runtime.engine() creates the schema itself
        return
    db = make_engine(database_url)
    upgrade(db)
    db.dispose()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A config, database and unreachable broker of this test's own; returns a ``run(*args)`` helper."""
    import worker.celery_app as celery_app
    from config.settings import SettingsCache
    from worker import runtime

    config = tmp_path / "jumpsync.toml"
    config.write_text(CONFIG)
    database_url = f"sqlite:///{tmp_path / 'jumpsync.db'}"
    migrate(database_url)
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(config))
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", database_url)
    monkeypatch.setenv("JUMPSYNC_BROKER_URL", UNREACHABLE_BROKER)
    # runtime caches the settings in a module global: give this test a fresh cache that reads its env.
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    # The Celery app reads the broker URL when it is built (at import): build one for this test. With
    # retry=False (as jumpsync.api.enqueue sends), kombu opens the connection through default_channel,
    # which retries a refused connection until broker_connection_timeout (4s) has passed: about six seconds
    # per send (see test_unreachable_broker_with_the_default_app). max_retries=0 makes it fail at once.
    app = celery_app.create_app()
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "max_retries": 0}
    monkeypatch.setattr(celery_app, "app", app)
    monkeypatch.setattr(runtime, "_settings", SettingsCache())  # unread, as in a fresh process (for --config)
    # Wide consoles, so that tables do not wrap ids.
    monkeypatch.setattr(provision, "console", Console(width=250))
    for module in (provision, common):
        monkeypatch.setattr(module, "err", Console(width=250, stderr=True))
    monkeypatch.setattr(local, "login_name", lambda: "tester")
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(cli.app, list(args), input=input)

    return run


def engine():
    from worker import runtime

    return runtime.engine()


def get(request_id: str) -> dict | None:
    from provisioning import requests

    return requests.get(engine(), request_id)


def all_requests() -> list[dict]:
    from provisioning import requests

    return requests.listing(engine(), limit=1000)


def provision_json(run, *args: str) -> tuple[int, dict]:
    result = run("provision", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def set_status(request_id: str, status: str, **values) -> None:
    from models.tables import ProvisioningRequest

    with Session(engine()) as session:
        row = session.get(ProvisioningRequest, request_id)
        row.status = status
        for key, value in values.items():
            setattr(row, key, value)
        session.add(row)
        session.commit()


# --- provision --------------------------------------------------------------------------------------------------

def test_valid_request_is_recorded_pending_when_the_broker_is_down(env):
    result = env("provision", "acme", "group.add-member", "--group", "Engineering", "--user", "alice@example.com")
    assert result.exit_code == 0, result.output
    [recorded] = all_requests()
    assert recorded["status"] == "pending"  # nothing lost: the relay will send it
    assert recorded["params"] == {"group": "Engineering", "user": "alice@example.com"}
    assert recorded["requested_by"] == "cli:tester"
    assert recorded["attempts"] == 0 and recorded["last_error"] is None
    assert f"request {recorded['id']} pending" in result.stdout
    assert "warning: could not enqueue" in result.stderr and "the relay will" in result.stderr


def test_unreachable_broker_with_the_default_app(env, monkeypatch):
    """With the app as configured (no test tweak), a refused connection still leaves the request pending.

    With retry=False, kombu retries the connection until ``broker_connection_timeout`` (4s) has passed, so
    this takes about six seconds (Celery's default publish retry policy gives up in under one): it must still
    end, and leave the request for the relay."""
    import worker.celery_app as celery_app

    monkeypatch.setattr(celery_app, "app", celery_app.create_app())
    assert "max_retries" not in celery_app.app.conf.broker_transport_options
    started = time.monotonic()
    code, request = provision_json(env, "acme", "user.suspend", "--user", "bob")
    elapsed = time.monotonic() - started
    assert code == 0 and request["status"] == "pending"
    assert get(request["id"])["status"] == "pending"
    assert elapsed < 30, f"enqueue to an unreachable broker blocked for {elapsed:.1f}s"


def test_json_output_is_the_request_view(env):
    code, request = provision_json(env, "acme", "app.grant", "--app", "Slack", "--group", "Sales",
                                   "--idempotency-key", "T-1", "--on-behalf-of", "servicedesk")
    assert code == 0
    assert request == get(request["id"])
    assert set(request) == {"id", "connector", "action", "params", "idempotency_key", "requested_by", "on_behalf_of",
                            "status", "dry_run", "attempts", "last_error", "result", "created_at", "updated_at",
                            "started_at", "finished_at"}
    assert request["requested_by"] == "cli:tester" and request["on_behalf_of"] == "servicedesk"
    assert request["idempotency_key"] == "T-1"


@pytest.mark.parametrize("args, message", [
    (("acme", "group.add-member", "--group", "Engineering"), "group.add-member: user is required"),
    (("acme", "user.suspend", "--user", "bob", "--group", "Engineering"), "group is not a parameter of this action"),
    (("nope", "user.suspend", "--user", "bob"), "unknown connector 'nope' (configured: acme, beta)"),
    (("acm", "user.suspend", "--user", "bob"), "unknown connector 'acm'; did you mean 'acme'?"),
    (("acme", "user.suspnd", "--user", "bob"), "unknown action 'user.suspnd'; did you mean 'user.suspend'"),
])
def test_a_usage_error_exits_2_naming_it_and_records_nothing(env, args, message):
    """A missing or foreign parameter, an unknown connector or action: refused before any row is written."""
    result = env("provision", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert all_requests() == []


def test_a_connector_name_is_matched_case_insensitively(env):
    code, request = provision_json(env, "ACME", "user.suspend", "--user", "bob")
    assert code == 0 and request["status"] == "pending" and request["connector"] == "acme"
    assert [r["id"] for r in all_requests()] == [request["id"]]


def test_action_not_allowed_by_policy_is_rejected_with_how_to_enable_it(env):
    result = env("provision", "acme", "user.delete", "--user", "bob")
    assert result.exit_code == 1
    [recorded] = all_requests()
    assert recorded["status"] == "rejected"
    assert "user.delete is not allowed for connector 'acme'" in recorded["last_error"]
    # the message is printed as it is (rich must not eat "[connectors.provisioning]" as markup)
    assert "enable it in [connectors.provisioning] allowed_actions" in result.stdout


def test_action_enabled_by_policy_is_accepted_with_dry_run(env):
    code, request = provision_json(env, "beta", "user.delete", "--user", "bob")
    assert code == 0 and request["status"] == "pending" and request["dry_run"] is True


def test_unknown_action_exits_2_with_the_list_and_records_nothing(env):
    result = env("provision", "acme", "user.nuke", "--user", "bob")
    assert result.exit_code == 2
    assert "unknown action 'user.nuke'" in result.stderr
    for name in ("group.add-member", "app.revoke", "role.set", "user.create", "user.delete"):
        assert name in result.stderr
    assert all_requests() == []


def test_same_idempotency_key_gives_the_same_request(env):
    args = ("acme", "group.add-member", "--group", "Eng", "--user", "alice", "--idempotency-key", "ticket-4711")
    code1, first = provision_json(env, *args)
    code2, second = provision_json(env, *args)
    assert code1 == code2 == 0
    assert first["id"] == second["id"]
    assert len(all_requests()) == 1


def test_same_idempotency_key_with_other_params_is_rejected(env):
    _, first = provision_json(env, "acme", "user.suspend", "--user", "alice", "--idempotency-key", "k")
    code, second = provision_json(env, "acme", "user.suspend", "--user", "bob", "--idempotency-key", "k")
    assert code == 1 and second["status"] == "rejected" and second["id"] != first["id"]
    assert first["id"] in second["last_error"]


def test_user_create_options_map_to_params(env):
    code, request = provision_json(
        env, "acme", "user.create", "--email", "dana@example.com", "--username", "dana", "--state", "activated",
        "--firstname", "Dana", "--lastname", "Scully", "--displayname", "Dana S", "--department", "X",
        "--job-title", "Agent", "--employee-type", "FTE", "--employee-id", "42", "--company", "FBI",
        "--cost-center", "CC1", "--location", "DC")
    assert code == 0, request
    assert request["params"] == {
        "email": "dana@example.com", "username": "dana", "state": "activated", "firstname": "Dana",
        "lastname": "Scully", "displayname": "Dana S", "department": "X", "job_title": "Agent",
        "employee_type": "FTE", "employee_id": "42", "company": "FBI", "cost_center": "CC1", "location": "DC"}


def test_state_must_be_staged_or_activated(env):
    result = env("provision", "acme", "user.create", "--email", "a@b.c", "--username", "a", "--state", "on")
    assert result.exit_code == 2
    assert all_requests() == []


def test_generic_param(env):
    code, request = provision_json(env, "acme", "user.create", "--email", "a@b.c", "--param", "username=a",
                                   "--param", "job-title=CTO", "--param", "cost_center=x=y")
    assert code == 0
    assert request["params"] == {"email": "a@b.c", "username": "a", "job_title": "CTO", "cost_center": "x=y",
                                 "state": "staged"}


@pytest.mark.parametrize("args, message", [
    (("--param", "user"), "is not key=value"),
    (("--param", "=bob"), "is not key=value"),
    (("--user", "bob", "--param", "user=carol"), "parameter 'user' is given twice"),
    (("--user", "bob", "--idempotency-key", "k" * 257), "--idempotency-key must be 1 to 256 characters"),
])
def test_bad_options_exit_2(env, args, message):
    result = env("provision", "acme", "user.suspend", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert all_requests() == []


def test_wait_times_out_with_exit_1_while_the_request_is_pending(env):
    result = env("provision", "acme", "user.suspend", "--user", "bob", "--wait", "--timeout", "0.3")
    assert result.exit_code == 1
    assert "timed out" in result.stderr and "still pending" in result.stderr
    [recorded] = all_requests()
    assert recorded["status"] == "pending"


def _fake_worker(monkeypatch, status: str, result: dict | None = None, error: str | None = None):
    """Stand in for a worker: the enqueue claims the request and records an outcome at once."""
    from datetime import timedelta

    import jumpsync.api
    from provisioning import requests

    def enqueue(request_id: str, **_options) -> bool:
        requests.claim(engine(), request_id, "fake-task", timedelta(minutes=5))
        requests.finish(engine(), request_id, "fake-task", status=status, result=result, error=error)
        return True

    monkeypatch.setattr(jumpsync.api, "enqueue", enqueue)


def test_wait_prints_the_outcome_and_exits_0_on_success(env, monkeypatch):
    _fake_worker(monkeypatch, "succeeded", result={"group_id": "g1", "user_id": "u1", "changed": True})
    result = env("provision", "acme", "group.add-member", "--group", "Eng", "--user", "alice", "--wait")
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout and '"changed": true' in result.stdout


def test_wait_exits_1_when_the_request_failed(env, monkeypatch):
    _fake_worker(monkeypatch, "failed", error="JumpCloud said 403 Forbidden")
    result = env("provision", "acme", "group.add-member", "--group", "Eng", "--user", "alice", "--wait", "--json")
    assert result.exit_code == 1
    request = json.loads(result.stdout)
    assert request["status"] == "failed" and request["last_error"] == "JumpCloud said 403 Forbidden"


def test_wait_with_a_dry_run_worker_in_process(env, monkeypatch):
    """The real runner, in this process, on a dry-run connector (it sends nothing to JumpCloud)."""
    import jumpsync.api
    from provisioning import runner
    from worker import runtime

    monkeypatch.setattr(jumpsync.api, "enqueue",
                        lambda request_id, **_options: bool(runner.execute(engine(), runtime.settings(), request_id, "t1")))
    code, request = provision_json(env, "beta", "user.create", "--email", "x@example.com", "--username", "x",
                                   "--wait", "--timeout", "10")
    assert code == 0, request
    assert request["status"] == "succeeded" and request["dry_run"] is True
    assert request["result"]["dry_run"] is True


def test_config_error_exits_2(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[connectors]]\nname = 'Bad Name'\napi_key_env = 'X'\n")
    result = env("provision", "acme", "user.suspend", "--user", "bob", "--config", str(bad))
    assert result.exit_code == 2 and "config error" in result.stderr


# --- requests ---------------------------------------------------------------------------------------------------

def _three(env) -> tuple[dict, dict, dict]:
    _, a = provision_json(env, "acme", "user.suspend", "--user", "alice")
    _, b = provision_json(env, "acme", "user.delete", "--user", "bob")      # rejected by policy
    _, c = provision_json(env, "beta", "user.suspend", "--user", "carol")
    return a, b, c


def test_requests_listing(env):
    a, b, c = _three(env)
    result = env("requests", "--json")
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert {r["id"] for r in listed} == {a["id"], b["id"], c["id"]}
    assert listed[0]["id"] == c["id"]  # newest first

    assert [r["id"] for r in json.loads(env("requests", "--status", "rejected", "--json").stdout)] == [b["id"]]
    assert {r["id"] for r in json.loads(env("requests", "--connector", "acme", "--json").stdout)} == {a["id"], b["id"]}
    assert len(json.loads(env("requests", "--limit", "2", "--json").stdout)) == 2

    table = env("requests")
    assert table.exit_code == 0
    for request in (a, b, c):
        assert request["id"] in table.stdout
    assert "rejected" in table.stdout and "not allowed" in table.stdout


def test_requests_listing_bad_status_exits_2(env):
    result = env("requests", "--status", "done")
    assert result.exit_code == 2 and "pending, running, succeeded, failed, rejected" in result.stderr


def test_requests_listing_empty(env):
    result = env("requests", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_requests_show(env):
    _, request = provision_json(env, "acme", "user.delete", "--user", "bob")
    shown = env("requests", "show", request["id"], "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout) == request
    human = env("requests", "show", request["id"])
    assert human.exit_code == 0
    assert request["id"] in human.stdout and "rejected" in human.stdout
    assert "[connectors.provisioning]" in human.stdout and '{"user": "bob"}' in human.stdout


def test_requests_show_unknown_id_exits_2(env):
    result = env("requests", "show", "nope")
    assert result.exit_code == 2 and "no provisioning request 'nope'" in result.stderr


def test_requests_retry_of_a_request_that_did_not_fail_exits_2(env):
    _, pending = provision_json(env, "acme", "user.suspend", "--user", "bob")
    _, rejected = provision_json(env, "acme", "user.delete", "--user", "bob")
    for request in (pending, rejected):
        result = env("requests", "retry", request["id"])
        assert result.exit_code == 2
        said = {"pending": "is pending", "rejected": "was rejected"}[request["status"]]
        assert f"request {request['id']} {said}; only a failed request can be retried" in result.stderr
        assert get(request["id"])["status"] == request["status"]


def test_requests_retry_unknown_id_exits_2(env):
    result = env("requests", "retry", "nope")
    assert result.exit_code == 2 and "no provisioning request 'nope'" in result.stderr


def test_requests_retry_of_a_failed_request(env):
    _, request = provision_json(env, "acme", "user.suspend", "--user", "bob")
    set_status(request["id"], "failed", attempts=5, last_error="gave up after 5 attempts")
    result = env("requests", "retry", request["id"], "--json")
    assert result.exit_code == 0, result.output
    retried = json.loads(result.stdout)
    assert retried["status"] == "pending" and retried["attempts"] == 0 and retried["last_error"] is None
    assert "could not enqueue" in result.stderr  # the broker is down: it stays pending for the relay


def test_requests_retry_wait(env, monkeypatch):
    _, request = provision_json(env, "acme", "user.suspend", "--user", "bob")
    set_status(request["id"], "failed", attempts=5, last_error="boom")
    _fake_worker(monkeypatch, "succeeded", result={"user_id": "u1", "changed": True})
    result = env("requests", "retry", request["id"], "--wait")
    assert result.exit_code == 0, result.output
    assert get(request["id"])["status"] == "succeeded"


# --- provision-bulk ---------------------------------------------------------------------------------------------

def jsonl(*objs) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


def test_bulk_jsonl_all_accepted(env, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl(
        {"connector": "acme", "action": "group.add-member", "params": {"group": "Eng", "user": "alice"}},
        {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}, "idempotency_key": "HR-1",
         "on_behalf_of": "hr"},
    ))
    result = env("provision-bulk", str(path), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["summary"] == {"pending": 2}
    assert [r["line"] for r in out["requests"]] == [1, 2]
    recorded = {r["id"]: r for r in all_requests()}
    assert all(recorded[r["id"]]["status"] == "pending" for r in out["requests"])
    first, second = (recorded[r["id"]] for r in out["requests"])
    assert first["requested_by"] == "cli:tester" and first["on_behalf_of"] is None
    assert second["requested_by"] == "cli:tester" and second["on_behalf_of"] == "hr"
    assert second["idempotency_key"] == "HR-1"


def test_bulk_mixed_file_reports_each_line_and_goes_on(env, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl(
        {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}},           # 1 pending
        "{not json",                                                                           # 2 invalid
        "",                                                                                    # 3 blank
        {"connector": "acme", "action": "user.suspend", "params": ["bob"]},                   # 4 rejected (recorded)
        {"connector": "acme", "action": "user.delete", "params": {"user": "bob"}},            # 5 rejected by policy
        {"connector": "acme", "action": "group.add-member", "params": {"group": "Eng"}},      # 6 rejected: no user
        {"connector": "nope", "action": "user.suspend", "params": {"user": "bob"}},           # 7 unknown connector
        {"params": {"user": "bob"}},                                                           # 8 invalid
        {"connector": "acme", "action": "user.unsuspend", "params": {"user": "bob"}},         # 9 pending
    ))
    result = env("provision-bulk", str(path), "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    rows = {r["line"]: r for r in out["requests"]}
    assert sorted(rows) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert {n: r["status"] for n, r in rows.items()} == {1: "pending", 2: "invalid", 4: "rejected", 5: "rejected",
                                                         6: "rejected", 7: "rejected", 8: "invalid", 9: "pending"}
    assert out["summary"] == {"pending": 2, "invalid": 2, "rejected": 4}
    assert rows[2]["id"] is None and rows[2]["error"].startswith("not valid JSON")
    assert "connector is required" in rows[8]["error"]
    assert rows[4]["error"] == f"{path} line 4: params must be an object, not an array"
    assert "user.delete is not allowed" in rows[5]["error"]
    assert rows[6]["error"] == "group.add-member: user is required"
    assert "unknown connector 'nope'" in rows[7]["error"]
    # everything that could be recorded was, with its own status
    recorded = {r["id"]: r["status"] for r in all_requests()}
    assert len(recorded) == 6
    for n in (1, 4, 5, 6, 7, 9):
        assert recorded[rows[n]["id"]] == rows[n]["status"]


def test_bulk_table_output(env, tmp_path, terminal):
    path = tmp_path / "r.jsonl"
    path.write_text(jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}}, "[1]"))
    piped = env("provision-bulk", str(path))
    assert piped.exit_code == 1
    request = all_requests()[0]
    assert f"1\t{request['id']}\tpending\t\n" in piped.stdout
    assert "2\t-\tinvalid\ta line must be a JSON object, not an array\n" in piped.stdout
    assert "1 invalid, 1 pending" in piped.stderr  # the summary: not a row
    terminal(160)
    table = env("provision-bulk", str(path))
    assert "a line must be a JSON object, not an array" in table.stdout and "\t" not in table.stdout
    assert "1 invalid, 1 pending" in table.stdout


def test_bulk_csv(env, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("connector,action,group,user,app,idempotency_key\n"
                    "acme,group.add-member,Engineering,alice@example.com,,T-1\n"
                    "acme,app.grant,,alice@example.com,Slack,T-2\n"
                    "acme,app.grant,Sales,alice@example.com,Slack,T-3\n"
                    "acme,user.suspend\n")
    result = env("provision-bulk", str(path), "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    rows = {r["line"]: r for r in out["requests"]}
    assert {n: r["status"] for n, r in rows.items()} == {2: "pending", 3: "pending", 4: "rejected", 5: "rejected"}
    assert rows[2]["request"]["params"] == {"group": "Engineering", "user": "alice@example.com"}
    assert rows[2]["request"]["idempotency_key"] == "T-1"
    assert rows[3]["request"]["params"] == {"app": "Slack", "user": "alice@example.com"}
    assert "give exactly one of user and group" in rows[4]["error"]
    assert rows[5]["error"] == f"{path} line 5: 2 cells, but the header has 6 columns"


def test_bulk_same_file_twice_with_keys_gives_the_same_requests(env, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("connector,action,user,idempotency_key\nacme,user.suspend,bob,K1\nacme,user.suspend,carol,K2\n")
    first = json.loads(env("provision-bulk", str(path), "--json").stdout)
    second = json.loads(env("provision-bulk", str(path), "--json").stdout)
    assert [r["id"] for r in first["requests"]] == [r["id"] for r in second["requests"]]
    assert len(all_requests()) == 2


def test_bulk_csv_header_without_action(env, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("connector,user\nacme,bob\n")
    result = env("provision-bulk", str(path), "--json")
    assert result.exit_code == 1
    [row] = json.loads(result.stdout)["requests"]
    assert row["line"] == 1 and row["status"] == "invalid" and "no action column" in row["error"]
    assert all_requests() == []


def test_bulk_format_option_and_stdin(env, tmp_path):
    path = tmp_path / "requests.txt"
    path.write_text("connector,action,user\nacme,user.suspend,bob\n")
    result = env("provision-bulk", str(path))
    assert result.exit_code == 2 and "--format" in result.stderr
    assert env("provision-bulk", str(path), "--format", "csv").exit_code == 0
    piped = env("provision-bulk", "-", "--format", "jsonl", "--json",
                input=jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "carol"}}))
    assert piped.exit_code == 0, piped.output
    assert len(all_requests()) == 2


@pytest.mark.parametrize("content", ["", "\n\n", "connector,action,user\n"])
def test_bulk_file_without_requests_exits_2(env, tmp_path, content):
    path = tmp_path / "requests.csv"
    path.write_text(content)
    result = env("provision-bulk", str(path))
    assert result.exit_code == 2 and "no requests" in result.stderr


def test_bulk_missing_or_binary_file_exits_2(env, tmp_path):
    assert env("provision-bulk", str(tmp_path / "missing.csv")).exit_code == 2
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = env("provision-bulk", str(binary))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_bulk_tries_the_unreachable_broker_once_only(env, tmp_path, monkeypatch):
    import jumpsync.api

    calls = []
    real = jumpsync.api.enqueue
    monkeypatch.setattr(jumpsync.api, "enqueue", lambda request_id, **options: calls.append(request_id) or real(request_id, **options))
    path = tmp_path / "requests.csv"
    path.write_text("connector,action,user\n" + "".join(f"acme,user.suspend,user{i}\n" for i in range(5)))
    result = env("provision-bulk", str(path))
    assert result.exit_code == 0
    assert len(calls) == 1
    assert "5 requests stay pending and the relay will send them" in result.stderr
    assert [r["status"] for r in all_requests()] == ["pending"] * 5


def test_bulk_wait(env, tmp_path, monkeypatch):
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}},
                          {"connector": "acme", "action": "user.suspend", "params": {"user": "carol"}}))
    timed_out = env("provision-bulk", str(path), "--wait", "--timeout", "0.3")
    assert timed_out.exit_code == 1 and "timed out" in timed_out.stderr

    _fake_worker(monkeypatch, "succeeded", result={"changed": True})
    path.write_text(jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "dave"}}))
    done = env("provision-bulk", str(path), "--wait", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["summary"] == {"succeeded": 1}


def test_bulk_wait_exits_1_unless_all_succeeded(env, tmp_path, monkeypatch):
    _fake_worker(monkeypatch, "failed", error="403")
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}}))
    result = env("provision-bulk", str(path), "--wait", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["summary"] == {"failed": 1}


# --- who asks, and for whom -------------------------------------------------------------------------------------

def test_requested_by_is_the_login_and_on_behalf_of_is_recorded_apart(env):
    code, request = provision_json(env, "acme", "user.suspend", "--user", "bob", "--on-behalf-of", "alice@example.com")
    assert code == 0
    assert get(request["id"])["requested_by"] == "cli:tester"
    assert get(request["id"])["on_behalf_of"] == "alice@example.com"


def test_requested_by_is_no_longer_an_option(env):
    for command in (("provision", "acme", "user.suspend", "--user", "bob"), ("provision-bulk", "x.jsonl")):
        result = env(*command, "--requested-by", "someone-else")
        assert result.exit_code == 2 and "No such option: --requested-by" in result.stderr
    assert all_requests() == []


def test_on_behalf_of_is_checked_like_other_text(env, tmp_path):
    result = env("provision", "acme", "user.suspend", "--user", "bob", "--on-behalf-of", "x" * 257)
    assert result.exit_code == 2 and "--on-behalf-of must be 1 to 256 characters" in result.stderr
    path = tmp_path / "r.jsonl"
    path.write_text(jsonl({"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}}))
    result = env("provision-bulk", str(path), "--on-behalf-of", "")
    assert result.exit_code == 2 and "--on-behalf-of must be 1 to 256 characters" in result.stderr
    assert all_requests() == []


def test_a_bulk_file_naming_requested_by_is_refused_before_anything_is_recorded(env, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl(
        {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}},
        {"connector": "acme", "action": "user.suspend", "params": {"user": "carol"}, "requested_by": "hr"},
        {"connector": "acme", "action": "user.suspend", "params": {"user": "dave"}},
    ))
    result = env("provision-bulk", str(path), "--json")
    assert result.exit_code == 2
    assert f"{path} line 2: requested_by cannot be set in a bulk file" in result.stderr
    assert "use on_behalf_of" in result.stderr
    assert result.stdout == "" and all_requests() == []


def test_a_bulk_csv_with_a_requested_by_column_is_refused(env, tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("connector,action,user,requested_by\nacme,user.suspend,bob,\n")
    result = env("provision-bulk", str(path))
    assert result.exit_code == 2 and f"{path} line 1: requested_by cannot be set" in result.stderr
    assert all_requests() == []


def test_bulk_on_behalf_of_per_line_and_by_default(env, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(jsonl(
        {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}},
        {"connector": "acme", "action": "user.suspend", "params": {"user": "carol"}, "on_behalf_of": "hr"},
        {"connector": "acme", "action": "user.suspend", "params": ["x"], "on_behalf_of": "it"},  # recorded, rejected
    ))
    result = env("provision-bulk", str(path), "--on-behalf-of", "ticket-7", "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)["requests"]
    recorded = [get(row["id"]) for row in rows]
    assert [r["on_behalf_of"] for r in recorded] == ["ticket-7", "hr", "it"]
    assert [r["requested_by"] for r in recorded] == ["cli:tester"] * 3
    assert recorded[2]["status"] == "rejected"


def test_the_python_interface_records_the_login_and_on_behalf_of(env, monkeypatch):
    import inspect

    from jumpsync import api

    assert "requested_by" not in inspect.signature(api.submit_request).parameters
    monkeypatch.setattr(api, "enqueue", lambda request_id, **_options: False)
    request = api.submit_request("acme", "user.suspend", {"user": "bob"}, on_behalf_of="alice@example.com")
    assert request["requested_by"] == "python:tester" and request["on_behalf_of"] == "alice@example.com"
    assert get(request["id"]) == request


def test_the_python_interface_takes_connector_names_as_the_cli_does(env, monkeypatch):
    from config.settings import ConfigError
    from jumpsync import api
    from provisioning.params import InvalidRequest

    monkeypatch.setattr(api, "enqueue", lambda request_id, **_options: False)
    request = api.submit_request("ACME", "user.suspend", {"user": "bob"})
    assert request["connector"] == "acme" and request["status"] == "pending"
    with pytest.raises(ConfigError, match="unknown connector 'acm'; did you mean 'acme'"):
        api.submit_request("acm", "user.suspend", {"user": "bob"})
    with pytest.raises(InvalidRequest, match="user is required"):
        api.submit_request("acme", "user.suspend", {})
    assert [r["id"] for r in all_requests()] == [request["id"]]
