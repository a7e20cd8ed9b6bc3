"""``jumpsync requests approve|deny|show`` and ``--status awaiting_approval``, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest

from auth import local
from provisioning import approvals, requests
from worker import runtime

CONFIG = ('[[connectors]]\nname = "acme"\napi_key_env = "ACME_KEY"\n\n'
          '[[connectors.provisioning.approval]]\nactions = ["group.add-member"]\ntargets = ["*admin*"]\n'
          'approvers = 2\n')


@pytest.fixture
def approving(run, tmp_path, monkeypatch):
    """The ``run`` fixture with an approval rule, the CLI's login ``bob``, and enqueues recorded, not sent."""
    (tmp_path / "jumpsync.toml").write_text(CONFIG)
    monkeypatch.setenv("ACME_KEY", "k")
    monkeypatch.setattr(local, "login_name", lambda: "bob")
    sent: list[str] = []
    monkeypatch.setattr("jumpsync.api.enqueue", lambda request_id, **_options: sent.append(request_id) or True)
    return run, sent


def _ask(requested_by: str) -> str:
    accepted = requests.accept(runtime.engine(), runtime.settings(), connector="acme", action="group.add-member",
                               params={"group": "Domain Admins", "user": "carol"}, requested_by=requested_by)
    assert accepted.request["status"] == "awaiting_approval"
    return accepted.request["id"]


def test_approve_deny_and_show(approving):
    run, sent = approving
    rid = _ask("token:ticketing")
    listed = run("requests", "--status", "awaiting_approval", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)] == [rid]
    approved = run("requests", "approve", rid, "--comment", "ticket OPS-1", "--json")
    assert approved.exit_code == 0, approved.output
    shown = json.loads(approved.stdout)
    assert shown["status"] == "awaiting_approval" and shown["approvals_required"] == 2
    assert shown["decisions"][0]["decided_by"] == "cli:bob" and shown["decisions"][0]["comment"] == "ticket OPS-1"
    assert sent == []
    again = run("requests", "approve", rid)
    assert again.exit_code == 2 and "cli:bob already decided request" in again.stderr
    approvals.approve(runtime.engine(), runtime.settings(), rid, "token:security")  # the second person
    human = run("requests", "show", rid)
    assert human.exit_code == 0
    assert "cli:bob" in human.stdout and "token:security" in human.stdout and "ticket OPS-1" in human.stdout
    assert json.loads(run("requests", "show", rid, "--json").stdout)["status"] == "pending"

    denied_id = _ask("token:ticketing")
    denied = run("requests", "deny", denied_id, "--comment", "no")
    assert denied.exit_code == 0 and "denied" in denied.stdout
    assert json.loads(run("requests", "show", denied_id, "--json").stdout)["last_error"] == "denied by cli:bob: no"


def test_the_approval_that_releases_a_request_enqueues_it(approving):
    run, sent = approving
    rid = _ask("token:ticketing")
    approvals.approve(runtime.engine(), runtime.settings(), rid, "token:security")
    released = run("requests", "approve", rid, "--json")
    assert released.exit_code == 0 and json.loads(released.stdout)["status"] == "pending"
    assert sent == [rid]


def test_refusals_exit_2_naming_the_problem(approving):
    run, sent = approving
    own = _ask("cli:bob")
    refused = run("requests", "approve", own)
    assert refused.exit_code == 2 and "cli:bob asked for request" in refused.stderr
    unknown = run("requests", "deny", "nope")
    assert unknown.exit_code == 2 and "no provisioning request 'nope'" in unknown.stderr
    assert sent == []


def test_provision_accepts_a_request_that_awaits_approval(approving):
    run, sent = approving
    result = run("provision", "acme", "group.add-member", "--group", "Domain Admins", "--user", "carol", "--json")
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)
    assert request["status"] == "awaiting_approval" and request["requested_by"] == "cli:bob"
    assert sent == []  # not sent to the workers until approved


def test_provision_wait_does_not_poll_for_approvers(approving):
    """Approvers are people: --wait says the request awaits approval at once (exit 1: not applied), instead of
    polling until its timeout."""
    run, sent = approving
    started = time.monotonic()
    result = run("provision", "acme", "group.add-member", "--group", "Domain Admins", "--user", "carol", "--wait",
                 "--timeout", "60")
    assert result.exit_code == 1 and "awaits approval" in result.stderr, result.output
    assert time.monotonic() - started < 30 and sent == []


def test_status_counts_the_requests_that_await_approval(approving):
    run, _ = approving
    _ask("token:ticketing")
    shown = run("status", "--json")
    assert shown.exit_code == 0, shown.output
    (acme,) = [entry for entry in json.loads(shown.stdout) if entry["connector"] == "acme"]
    assert acme["provisioning"] == {"awaiting_approval": 1}
