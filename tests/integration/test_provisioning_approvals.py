"""Approvals on SQLite and on PostgreSQL: which requests wait, who may decide them, and that a request is
released (moved to pending, enqueued) exactly once, by enough distinct approvers other than its requester."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlmodel import Session, col

from config.connector import ApprovalRule
from config.settings import ConnectorConfig, FileConfig, ProvisioningPolicy, Settings
from models import queries
from models.states import REQUESTS, IllegalTransition, RequestStatus
from models.tables import ProvisioningDecision, ProvisioningRequest, Resource, utcnow
from provisioning import approvals, requests, runner
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.databases import add_connector

ADMINS_ID = "5f0000000000000000000a01"
UNKNOWN_ID = "5f0000000000000000000fff"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def settings_for(db_url: str, *rules: ApprovalRule, **policy) -> Settings:
    allowed = ("group.add-member", "group.remove-member", "app.grant", "app.revoke", "user.suspend")
    connector = ConnectorConfig(name="acme", base_url="http://127.0.0.1:9", api_key_env=TEST_KEY_ENV,
                                provisioning=ProvisioningPolicy(allowed_actions=allowed, approval=rules, **policy))
    return Settings(config_path=Path("t.toml"), database_url=db_url, broker_url="redis://unused",
                    file=FileConfig(connectors=(connector,)))


ADMIN_GROUPS = ApprovalRule(actions=("group.add-member",), targets=("*admin*",), approvers=1)
AWS_APPS = ApprovalRule(actions=("app.grant", "app.revoke"), targets=("AWS*",), approvers=2)


def _seed_groups(engine) -> None:
    cid = add_connector(engine, "acme")
    now = utcnow()
    with Session(engine) as session:
        session.add(Resource(connector_id=cid, type="group", external_id=ADMINS_ID, name="Engineering Admins",
                             name_key="engineering admins", content_hash="x", first_seen_at=now, updated_at=now))
        session.commit()


def _ask(engine, settings, action="group.add-member", requested_by="token:ticketing", **params):
    params = params or {"group": "Engineering Admins", "user": "alice@example.com"}
    return requests.accept(engine, settings, connector="acme", action=action, params=params,
                           requested_by=requested_by)


def _awaiting(engine, settings, **kwargs) -> str:
    accepted = _ask(engine, settings, **kwargs)
    assert accepted.request["status"] == "awaiting_approval" and not accepted.enqueue, accepted
    return accepted.request["id"]


def test_approval_is_needed_by_target_pattern(engine, db_url):
    _seed_groups(engine)
    settings = settings_for(db_url, ADMIN_GROUPS, AWS_APPS)
    waiting = _ask(engine, settings)
    assert waiting.request["status"] == "awaiting_approval" and not waiting.enqueue
    assert _ask(engine, settings, group="ENGINEERING admins", user="bob").request["status"] == "awaiting_approval"
    by_id = _ask(engine, settings, group=ADMINS_ID, user="bob")  # the id's name, from the synced database
    assert by_id.request["status"] == "awaiting_approval"
    unknown = _ask(engine, settings, group=UNKNOWN_ID, user="bob")  # an unknown id may be anything: it waits
    assert unknown.request["status"] == "awaiting_approval"
    plain = _ask(engine, settings, group="Sales", user="bob")
    assert plain.request["status"] == "pending" and plain.enqueue
    other_action = _ask(engine, settings, action="group.remove-member", group="Engineering Admins", user="bob")
    assert other_action.request["status"] == "pending"
    aws = _ask(engine, settings, action="app.grant", app="aws prod", user="bob")
    assert aws.request["status"] == "awaiting_approval"
    assert approvals.detail(engine, aws.request["id"])["approvals_required"] == 2
    with Session(engine) as session:
        row = session.get(ProvisioningRequest, waiting.request["id"])
        assert row.enqueued_at is None and row.approvals_required == 1
        assert timedelta(hours=71) < row.approval_expires_at - row.created_at <= timedelta(hours=72)
    relayed = requests.due_for_relay(engine, relay_after=timedelta(0), lease=timedelta(0))
    assert set(relayed) == {plain.request["id"], other_action.request["id"]}  # awaiting ones are never relayed


def test_the_strictest_matching_rule_wins(engine, db_url):
    settings = settings_for(db_url, ADMIN_GROUPS, ApprovalRule(targets=("engineering*",), approvers=2))
    rid = _awaiting(engine, settings)
    assert approvals.detail(engine, rid)["approvals_required"] == 2
    assert approvals.detail(engine, _awaiting(engine, settings, group="Ops Admins", user="bob"))[
        "approvals_required"] == 1


def test_the_requester_cannot_approve_their_own_request(engine, db_url):
    settings = settings_for(db_url, ADMIN_GROUPS)
    rid = _awaiting(engine, settings, requested_by="cli:alice")
    with pytest.raises(approvals.SelfApproval, match="cli:alice asked for request .* and cannot approve it"):
        approvals.approve(engine, settings, rid, "cli:alice")
    assert approvals.detail(engine, rid)["status"] == "awaiting_approval"
    assert approvals.detail(engine, rid)["decisions"] == []
    assert approvals.approve(engine, settings, rid, "token:security")["status"] == "pending"


def test_refusals_name_the_problem(engine, db_url):
    settings = settings_for(db_url, ApprovalRule(targets=("*admin*",), approvers=2))
    with pytest.raises(approvals.UnknownRequest, match="no provisioning request 'nope'"):
        approvals.approve(engine, settings, "nope", "cli:bob")
    pending = _ask(engine, settings, group="Sales", user="bob").request["id"]
    with pytest.raises(approvals.NotAwaitingApproval, match=f"request {pending} is pending"):
        approvals.deny(engine, settings, pending, "cli:bob")
    rid = _awaiting(engine, settings)
    approvals.approve(engine, settings, rid, "cli:bob", comment="ticket checked")
    with pytest.raises(approvals.DuplicateDecision, match="cli:bob already decided request"):
        approvals.approve(engine, settings, rid, "cli:bob")
    with pytest.raises(approvals.DuplicateDecision):
        approvals.deny(engine, settings, rid, "cli:bob")
    with pytest.raises(approvals.ApprovalError, match="needs the principal"):
        approvals.approve(engine, settings, rid, " ")
    shown = approvals.detail(engine, rid)
    assert shown["status"] == "awaiting_approval"
    assert [(d["decision"], d["decided_by"], d["comment"]) for d in shown["decisions"]] == [
        ("approve", "cli:bob", "ticket checked")]


def test_two_person_rule(engine, db_url):
    settings = settings_for(db_url, ApprovalRule(targets=("*admin*",), approvers=2))
    rid = _awaiting(engine, settings)
    first = approvals.approve(engine, settings, rid, "token:alice")
    assert first["status"] == "awaiting_approval"
    assert requests.claim(engine, rid, "task-1", timedelta(minutes=10)) is None  # not released yet
    second = approvals.approve(engine, settings, rid, "cli:bob")
    assert second["status"] == "pending"
    assert [d["decided_by"] for d in second["decisions"]] == ["token:alice", "cli:bob"]
    assert requests.claim(engine, rid, "task-1", timedelta(minutes=10)) is not None
    with pytest.raises(approvals.NotAwaitingApproval):
        approvals.approve(engine, settings, rid, "cli:carol")


def test_one_denial_ends_it(engine, db_url):
    settings = settings_for(db_url, ApprovalRule(targets=("*admin*",), approvers=2))
    rid = _awaiting(engine, settings)
    approvals.approve(engine, settings, rid, "token:alice")
    denied = approvals.deny(engine, settings, rid, "cli:bob", comment="not on the team")
    assert denied["status"] == "denied" and denied["finished_at"]
    assert denied["last_error"] == "denied by cli:bob: not on the team"
    assert [d["decision"] for d in denied["decisions"]] == ["approve", "deny"]
    with pytest.raises(approvals.NotAwaitingApproval, match="was denied; only a request awaiting approval"):
        approvals.approve(engine, settings, rid, "cli:carol")
    assert requests.claim(engine, rid, "task-1", timedelta(minutes=10)) is None


def test_expiry(engine, db_url):
    settings = settings_for(db_url, ADMIN_GROUPS, approval_expires="1h")
    rid = _awaiting(engine, settings)
    assert approvals.expire_due(engine) == []
    assert approvals.expire_due(engine, utcnow() + timedelta(minutes=59)) == []
    [expired] = approvals.expire_due(engine, utcnow() + timedelta(minutes=61))
    assert expired["id"] == rid and expired["status"] == "expired" and "not approved in time" in expired["last_error"]
    with pytest.raises(approvals.NotAwaitingApproval, match="has expired; only a request awaiting approval"):
        approvals.approve(engine, settings, rid, "cli:bob")
    # Approved after its time, before the beat task ran: it expires then and there.
    late = _awaiting(engine, settings)
    with Session(engine) as session:
        session.execute(update(ProvisioningRequest).where(col(ProvisioningRequest.id) == late)
                        .values(approval_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    with pytest.raises(approvals.NotAwaitingApproval, match="expired at .* before it was approved"):
        approvals.approve(engine, settings, late, "cli:bob")
    assert approvals.detail(engine, late)["status"] == "expired"
    assert approvals.detail(engine, late)["decisions"] == []


def test_concurrent_approvals_release_it_once(engine, db_url):
    settings = settings_for(db_url, ApprovalRule(targets=("*admin*",), approvers=2))
    for _ in range(3):
        rid = _awaiting(engine, settings)
        start = threading.Barrier(4)
        outcomes: list = []

        def decide(who: str, rid: str = rid, start: threading.Barrier = start, outcomes: list = outcomes) -> None:
            start.wait()
            try:
                outcomes.append(approvals.approve(engine, settings, rid, who)["status"])
            except approvals.NotAwaitingApproval:
                outcomes.append("refused")

        threads = [threading.Thread(target=decide, args=(f"token:approver-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes).count("pending") == 1, outcomes  # exactly one caller enqueues it
        assert outcomes.count("awaiting_approval") == 1, outcomes
        with Session(engine) as session:
            decided = session.execute(select(col(ProvisioningDecision.decided_by)).where(
                col(ProvisioningDecision.request_id) == rid)).scalars().all()
        assert len(decided) == 2
        assert approvals.detail(engine, rid)["status"] == "pending"


def test_an_apply_message_for_an_awaiting_request_applies_nothing(engine, db_url):
    settings = settings_for(db_url, ADMIN_GROUPS)
    rid = _awaiting(engine, settings)
    execution = runner.execute(engine, settings, rid, "forged-task-id")
    assert execution.status is None
    shown = requests.get(engine, rid)
    assert shown["status"] == "awaiting_approval" and shown["attempts"] == 0 and shown["started_at"] is None


def test_status_moves_only_through_the_state_machine(engine, db_url, monkeypatch):
    assert REQUESTS.create(RequestStatus.AWAITING_APPROVAL) is RequestStatus.AWAITING_APPROVAL
    for target in (RequestStatus.PENDING, RequestStatus.DENIED, RequestStatus.EXPIRED):
        assert REQUESTS.allows(RequestStatus.AWAITING_APPROVAL, target)
    for source, target in [(RequestStatus.AWAITING_APPROVAL, RequestStatus.RUNNING),
                           (RequestStatus.AWAITING_APPROVAL, RequestStatus.SUCCEEDED),
                           (RequestStatus.DENIED, RequestStatus.PENDING), (RequestStatus.EXPIRED, RequestStatus.PENDING),
                           (RequestStatus.PENDING, RequestStatus.AWAITING_APPROVAL)]:
        with pytest.raises(IllegalTransition):
            REQUESTS.move(source, target)
    moves: list[tuple] = []

    class Spy:
        def move(self, current, target):
            moves.append((current, target))
            return REQUESTS.move(current, target)

    monkeypatch.setattr(approvals, "REQUESTS", Spy())
    settings = settings_for(db_url, ADMIN_GROUPS, approval_expires="1h")
    approvals.approve(engine, settings, _awaiting(engine, settings), "cli:bob")
    approvals.deny(engine, settings, _awaiting(engine, settings), "cli:bob")
    _awaiting(engine, settings)
    approvals.expire_due(engine, utcnow() + timedelta(hours=2))
    a = RequestStatus.AWAITING_APPROVAL
    assert moves == [(a, RequestStatus.PENDING), (a, RequestStatus.DENIED), (a, RequestStatus.EXPIRED)]


def test_metrics_report_the_oldest_awaiting_request(engine, db_url):
    settings = settings_for(db_url, ADMIN_GROUPS)
    assert queries.metrics_snapshot(engine).oldest_awaiting_approval_seconds == 0.0
    rid = _awaiting(engine, settings)
    with Session(engine) as session:
        session.execute(update(ProvisioningRequest).where(col(ProvisioningRequest.id) == rid)
                        .values(created_at=utcnow() - timedelta(hours=5)))
        session.commit()
    snapshot = queries.metrics_snapshot(engine)
    assert 5 * 3600 - 60 < snapshot.oldest_awaiting_approval_seconds < 5 * 3600 + 60
    assert snapshot.oldest_pending_seconds == 0.0
    assert [r["id"] for r in approvals.awaiting(engine)] == [rid]
