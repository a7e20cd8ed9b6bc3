"""The provisioning audit trail (provisioning.audit) on SQLite and PostgreSQL: a request's whole story, in order,
with who did each step; the filters; JSON lines; and ``jumpsync audit``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from config.connector import ApprovalRule
from models.tables import ProvisioningRetry, utcnow
from provisioning import approvals, requests
from provisioning.audit import AuditKind, events
from tests.integration.test_provisioning_approvals import _seed_groups, settings_for
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV

LEASE = timedelta(minutes=5)
TWO_FOR_ADMINS = ApprovalRule(actions=("group.add-member",), targets=("*admin*",), approvers=2)
ADMINS = {"group": "Engineering Admins", "user": "alice@example.com"}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def _story(engine, db_url) -> str:
    """Submitted by a token for alice, approved by two, failed, retried by the CLI, succeeded."""
    _seed_groups(engine)
    settings = settings_for(db_url, TWO_FOR_ADMINS)
    accepted = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADMINS,
                               requested_by="token:desk", on_behalf_of="alice@example.com")
    rid = accepted.request["id"]
    approvals.approve(engine, settings, rid, "cli:ann", "ticket OPS-7")
    assert approvals.approve(engine, settings, rid, "token:bob")["status"] == "pending"
    assert requests.claim(engine, rid, "task-1", LEASE) is not None
    assert requests.finish(engine, rid, "task-1", status="failed", error="JumpCloud said 503")
    requests.retry(engine, rid, "cli:carol")
    assert requests.claim(engine, rid, "task-2", LEASE) is not None
    assert requests.finish(engine, rid, "task-2", status="succeeded", result={"group_id": "g1", "changed": True})
    return rid


def test_a_requests_story_in_order_with_its_actors(engine, db_url):
    rid = _story(engine, db_url)
    found = events(engine)
    assert [(e.kind, e.actor) for e in found] == [
        (AuditKind.SUBMITTED, "token:desk"), (AuditKind.APPROVED, "cli:ann"), (AuditKind.APPROVED, "token:bob"),
        (AuditKind.RETRIED, "cli:carol"), (AuditKind.SUCCEEDED, None)]
    assert {e.request_id for e in found} == {rid} and {e.on_behalf_of for e in found} == {"alice@example.com"}
    assert found[1].detail == "ticket OPS-7"
    assert json.loads(found[-1].detail or "") == {"group_id": "g1", "changed": True}
    assert all(e.at.utcoffset() == timedelta(0) for e in found)
    assert [e.at for e in found] == sorted(e.at for e in found)
    with engine.connect() as connection:  # the retry is a row of its own, written with the status move
        assert connection.execute(select(ProvisioningRetry.retried_by)).scalars().all() == ["cli:carol"]

    lines = [json.loads(event.to_json()) for event in found]
    assert lines[3] == {"at": found[3].at.isoformat(), "kind": "retried", "request_id": rid, "connector": "acme",
                        "action": "group.add-member", "actor": "cli:carol", "on_behalf_of": "alice@example.com",
                        "detail": None}


def test_filters_denials_and_rejections(engine, db_url):
    rid = _story(engine, db_url)
    settings = settings_for(db_url, TWO_FOR_ADMINS)
    denied = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADMINS,
                             requested_by="token:desk").request["id"]
    approvals.deny(engine, settings, denied, "cli:ann", "no ticket")
    rejected = requests.accept(engine, settings, connector="nope", action="group.add-member", params=ADMINS,
                               requested_by="token:desk").request
    kinds = [(e.request_id, e.kind) for e in events(engine)]
    assert (denied, AuditKind.DENIED) in kinds and (rejected["id"], AuditKind.REJECTED) in kinds
    assert kinds.index((rejected["id"], AuditKind.SUBMITTED)) < kinds.index((rejected["id"], AuditKind.REJECTED))

    assert {e.request_id for e in events(engine, connector="acme")} == {rid, denied}
    assert [e.kind for e in events(engine, connector="nope")] == [AuditKind.SUBMITTED, AuditKind.REJECTED]
    assert events(engine, connector="other") == [] and events(engine, connector=[]) == []
    assert {e.connector for e in events(engine, connector=["acme", "nope"])} == {"acme", "nope"}
    everything = events(engine)
    assert events(engine, limit=3) == everything[:3]
    middle = everything[2].at
    assert events(engine, since=middle) == [e for e in everything if e.at >= middle]
    assert events(engine, until=middle) == [e for e in everything if e.at < middle]
    assert events(engine, since=utcnow() + timedelta(hours=1)) == []


def test_the_cli_lists_the_trail_as_a_table_and_as_json_lines(run, monkeypatch):
    from auth import local
    from worker import runtime

    monkeypatch.setenv("ACME_KEY", "k")
    monkeypatch.setattr(local, "login_name", lambda: "bob")
    monkeypatch.setattr("jumpsync.api.enqueue", lambda request_id, **_options: True)
    engine = runtime.engine()
    rid = requests.accept(engine, runtime.settings(), connector="acme", action="group.add-member",
                          params={"group": "Engineering", "user": "carol"}, requested_by="token:desk").request["id"]
    requests.claim(engine, rid, "task-1", LEASE)
    requests.finish(engine, rid, "task-1", status="failed", error="boom")
    retried = run("requests", "retry", rid, "--json")
    assert retried.exit_code == 0, retried.output

    jsonl = run("audit", "--jsonl")
    assert jsonl.exit_code == 0, jsonl.output
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [(line["kind"], line["actor"]) for line in lines] == [("submitted", "token:desk"), ("retried", "cli:bob")]
    table = run("audit", "--connector", "acme", "--since", "1h")
    assert table.exit_code == 0 and "retried" in table.stdout and "cli:bob" in table.stdout, table.output
    assert run("audit", "--connector", "other", "--jsonl").stdout == ""
    assert json.loads(run("audit", "--jsonl", "--limit", "1").stdout)["kind"] == "submitted"
    for option, value in (("--since", "yesterday"), ("--until", "24h")):
        bad = run("audit", option, value)
        assert bad.exit_code == 2 and option in bad.stderr, bad.output
