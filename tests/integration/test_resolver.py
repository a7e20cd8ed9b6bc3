"""models.resolver: one set of rules for what a person typed, on SQLite and PostgreSQL, and the same answers
through ``access``, ``who-has``, ``provision`` (dry run: the database step alone) and the ``requests`` filters."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlmodel import Session

from connector.records import ResourceRecord
from models import resolver
from models.store import ResourceWriter
from tests.support.databases import add_connector

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
AWS = "5f0000000000000000000a01"
AWS_DEV = "5f0000000000000000000a02"
SLACK = "5f0000000000000000000a03"
ALICE = "5f00000000000000000000u1"


def _tenant(engine) -> int:
    cid = add_connector(engine, "barcheck")
    ResourceWriter(engine, cid, "user", NOW).write([
        ResourceRecord("user", ALICE, "Alice Anders", "alice@example.com", "active", {"username": "alice.anders"}),
        ResourceRecord("user", "u2", "Alina Berg", "alina@example.com", "active", {"username": "aberg"}),
        ResourceRecord("user", "u3", "Bob Brown", "bob@example.com", "suspended", {"username": "bob"})])
    ResourceWriter(engine, cid, "admin", NOW).write([
        ResourceRecord("admin", "a1", "Olga Orr", "olga@example.com", "active", {})])
    ResourceWriter(engine, cid, "app", NOW).write([
        ResourceRecord("app", AWS, "AWS (prod)", status="active", profile={"template": "aws-sso"}),
        ResourceRecord("app", AWS_DEV, "AWS (dev)", status="active", profile={"template": "aws-sso"}),
        ResourceRecord("app", SLACK, "Slack", status="active", profile={"template": "slack"})])
    ResourceWriter(engine, cid, "group", NOW).write([
        ResourceRecord("group", "g1", "Engineering"), ResourceRecord("group", "g2", "Operations")])
    ResourceWriter(engine, cid, "role", NOW).write([ResourceRecord("role", "help-desk", "Help Desk")])
    return cid


@pytest.fixture
def tenant(engine):
    return engine, _tenant(engine)


def _ids(engine, cid, kind, ref):
    with Session(engine) as session:
        return [row.external_id for row in resolver.matches(session, cid, kind, ref)]


def test_each_kind_resolves_by_its_rules_case_insensitively(tenant):
    engine, cid = tenant
    assert _ids(engine, cid, "app", "SLACK") == [SLACK]  # label
    assert _ids(engine, cid, "app", "slack") == [SLACK]  # label and template: one app, once
    assert _ids(engine, cid, "app", AWS.upper()) == [AWS]  # id, case-insensitive
    assert _ids(engine, cid, "app", "aws (PROD)") == [AWS]
    assert _ids(engine, cid, "app", "AWS-SSO") == [AWS, AWS_DEV]  # template name: both apps of it
    assert _ids(engine, cid, "user", "ALICE@example.com") == [ALICE]
    assert _ids(engine, cid, "user", "Alice.Anders") == [ALICE]
    assert _ids(engine, cid, "user", "Alice Anders") == []  # a display name is not a reference to a person
    assert _ids(engine, cid, "admin", "OLGA@EXAMPLE.COM") == ["a1"]
    assert _ids(engine, cid, "group", " engineering ") == ["g1"]
    assert _ids(engine, cid, "role", "help desk") == ["help-desk"] and _ids(engine, cid, "role", "HELP-DESK") == [
        "help-desk"]


def test_ambiguous_and_unknown_references_name_the_candidates(tenant):
    engine, cid = tenant
    with Session(engine) as session:
        with pytest.raises(resolver.Ambiguous, match="2 live apps match 'aws-sso'") as caught:
            resolver.resolve(session, cid, "app", "aws-sso")
        assert [(c["id"], c["template"]) for c in caught.value.candidates] == [(AWS, "aws-sso"), (AWS_DEV, "aws-sso")]
        with pytest.raises(resolver.NotFound, match="no live app with id, name or template name 'slak'") as caught:
            resolver.resolve(session, cid, "app", "slak")
        assert [c["id"] for c in caught.value.candidates] == [SLACK]
        with pytest.raises(resolver.NotFound) as caught:
            resolver.resolve(session, cid, "group", "Enginering")
        assert [c["name"] for c in caught.value.candidates] == ["Engineering"]
        with pytest.raises(resolver.NotFound) as caught:
            resolver.resolve_person(session, cid, "alise@example.com")
        assert [c["id"] for c in caught.value.candidates][:2] == [ALICE, "u2"]  # alice, then alina
        with pytest.raises(resolver.NotFound) as caught:
            resolver.resolve(session, cid, "group", "zzzz")
        assert caught.value.candidates == []  # nothing close: nothing offered


def test_describe_and_did_you_mean_read_as_one_line_each():
    app = {"type": "app", "id": AWS, "name": "AWS (prod)", "template": "aws-sso"}
    user = {"type": "user", "id": "u1", "name": "Alice", "email": "a@x.io", "status": "active", "username": "alice"}
    assert resolver.describe(app) == f"app {AWS}: AWS (prod) (template aws-sso)"
    assert resolver.describe(user) == "user u1: Alice (a@x.io, alice, active)"
    assert resolver.did_you_mean([app]) == f"; did you mean: AWS (prod) (app {AWS})"
    assert resolver.did_you_mean([]) == ""
    assert resolver.suggest("acm", ["acme", "globex"]) == "; did you mean 'acme'?"
    assert resolver.suggest("user.suspnd", ["user.suspend", "user.unsuspend"]) == (
        "; did you mean 'user.suspend' or 'user.unsuspend'?")


@pytest.fixture
def cli(run, engine):
    """``jumpsync`` in-process on a database holding the barcheck tenant (connector acme configured)."""
    _tenant(engine)
    return run


def test_who_has_finds_an_app_by_its_template_name_and_offers_the_closest(cli):
    result = cli("who-has", "barcheck", "app:slack", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resource"]["id"] == SLACK
    ambiguous = cli("who-has", "barcheck", "app:aws-sso")
    assert ambiguous.exit_code == 2
    assert "2 live apps match 'aws-sso'; give one's id" in ambiguous.stderr
    assert f"app {AWS}: AWS (prod) (template aws-sso)" in ambiguous.stderr
    unknown = cli("who-has", "barcheck", "group:Enginering")
    assert unknown.exit_code == 2 and "did you mean:" in unknown.stderr and "group g1: Engineering" in unknown.stderr


def test_access_offers_the_closest_people(cli):
    result = cli("access", "barcheck", "alise@example.com")
    assert result.exit_code == 2
    assert "no user or admin with id, email or username 'alise@example.com'" in result.stderr
    assert f"user {ALICE}: Alice Anders (alice@example.com, alice.anders, active)" in result.stderr


def test_a_mistyped_connector_is_offered_the_known_ones(cli):
    result = cli("resources", "barchek")
    assert result.exit_code == 2 and "did you mean 'barcheck'?" in result.stderr
    assert cli("resources", "BARCHECK", "--json").exit_code == 0  # connector names are lowercase


def test_provision_dry_run_resolves_by_the_same_rules(cli, tmp_path, monkeypatch):
    config = tmp_path / "barcheck.toml"
    config.write_text('[[connectors]]\nname = "barcheck"\napi_key_env = "BARCHECK_KEY"\n'
                      '[connectors.provisioning]\ndry_run = true\n')
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(config))
    monkeypatch.setenv("BARCHECK_KEY", "not-used-in-a-dry-run")
    import jumpsync.api
    from provisioning import runner
    from worker import runtime

    monkeypatch.setattr(jumpsync.api, "enqueue",  # the real runner, in this process
                        lambda request_id, **_options: bool(runner.execute(runtime.engine(), runtime.settings(), request_id, "t")))
    granted = cli("provision", "barcheck", "app.grant", "--app", "Slack", "--user", "ALICE.ANDERS", "--json",
                  "--wait", "--timeout", "10")
    request = json.loads(granted.stdout)
    assert request["status"] == "succeeded" and request["dry_run"] is True, granted.output
    assert SLACK in json.dumps(request["result"]) and ALICE in json.dumps(request["result"]), request["result"]
    unknown = cli("provision", "barcheck", "app.grant", "--app", "slak", "--user", "alice.anders", "--json",
                  "--wait", "--timeout", "10")
    assert unknown.exit_code == 1
    error = json.loads(unknown.stdout)["last_error"]
    assert "application 'slak' is not in the synced database" in error and f"did you mean: Slack (app {SLACK})" in error
    typo = cli("provision", "barcheck", "user.suspnd", "--user", "bob")
    assert typo.exit_code == 2 and "did you mean 'user.suspend'" in typo.stderr


def test_requests_filters_name_what_was_meant(cli):
    assert cli("requests", "--status", "faild").exit_code == 2
    result = cli("requests", "--status", "faild")
    assert "did you mean 'failed'?" in result.stderr
    action = cli("requests", "--action", "app.grnt")
    assert action.exit_code == 2 and "did you mean 'app.grant'?" in action.stderr
    connector = cli("requests", "--connector", "barchek")
    assert connector.exit_code == 2 and "did you mean 'barcheck'?" in connector.stderr
    assert cli("requests", "--connector", "barcheck", "--action", "app.grant", "--json").exit_code == 0
