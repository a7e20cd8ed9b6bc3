"""The broker grants nothing by itself: a message written straight into Redis can propose a change, which waits
for an authenticated approver, but cannot cause one.

The database tests run on SQLite and on PostgreSQL. The end-to-end test pushes hand-built Celery messages with
redis-py (no jumpsync import on the sending side, as an attacker with the broker's password would) for every
task name on the provisioning queue, to the real workers.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlmodel import Session

from config.connector import ApprovalRule
from config.settings import ConnectorConfig, FileConfig, ProvisioningPolicy, Settings
from models.tables import ProvisioningRequest, utcnow
from provisioning import approvals, requests
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.e2e import approve_and_send, find_request, new_connector, sync_now, wait_request, wait_status
from worker.names import Queue, TaskName

pytestmark = pytest.mark.integration

ADD = {"group": "Engineering Admins", "user": "alice@example.com"}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def settings_for(db_url: str, *rules: ApprovalRule) -> Settings:
    connector = ConnectorConfig(name="acme", base_url="http://127.0.0.1:9", api_key_env=TEST_KEY_ENV,
                                provisioning=ProvisioningPolicy(allowed_actions=("group.add-member",),
                                                                approval=rules, approval_expires="2h"))
    return Settings(config_path=Path("t.toml"), database_url=db_url, broker_url="redis://unused",
                    file=FileConfig(connectors=(connector,)))


def _stored(engine, request_id: str) -> ProvisioningRequest:
    with Session(engine) as session:
        row = session.get(ProvisioningRequest, request_id)
        assert row is not None
        return row


def test_a_broker_proposal_always_awaits_an_approver(engine, db_url, caplog):
    settings = settings_for(db_url)  # no approval rules: every other entry point's request would be pending
    direct = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                             requested_by="cli:alice")
    assert direct.enqueue and direct.request["status"] == "pending"

    with caplog.at_level(logging.WARNING, logger="provisioning.requests"):
        proposed = requests.propose_from_broker(engine, settings, connector="acme", action="group.add-member",
                                                params=ADD, idempotency_key="k1", claimed_requester="cli:alice")
    assert not proposed.enqueue
    assert proposed.request["status"] == "awaiting_approval"
    assert proposed.request["requested_by"] == "broker:cli:alice"
    row = _stored(engine, proposed.request["id"])
    assert row.approvals_required == 1
    assert row.approval_expires_at is not None
    assert abs(row.approval_expires_at - (utcnow() + timedelta(hours=2))) < timedelta(minutes=1)
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == proposed.request["id"]]
    assert logged and logged[0].levelno == logging.WARNING and logged[0].claimed_requester == "cli:alice"
    assert "alice@example.com" not in caplog.text  # parameters are not logged

    anonymous = requests.propose_from_broker(engine, settings, connector="acme", action="group.add-member",
                                             params=ADD, idempotency_key="k2", claimed_requester=None)
    assert anonymous.request["requested_by"] == "broker:unknown"

    # The connector's rules still count when they ask more than one approver.
    strict = settings_for(db_url, ApprovalRule(actions=("group.add-member",), targets=("*",), approvers=2))
    two = requests.propose_from_broker(engine, strict, connector="acme", action="group.add-member",
                                       params=ADD, idempotency_key="k3", claimed_requester="servicedesk")
    assert two.request["status"] == "awaiting_approval" and _stored(engine, two.request["id"]).approvals_required == 2

    # What a message is refused is still refused, its claim labelled as one.
    refused = requests.propose_from_broker(engine, settings, connector="acme", action="user.delete",
                                           params={"user": "u"}, idempotency_key="k4", claimed_requester="x")
    assert refused.request["status"] == "rejected" and refused.request["requested_by"] == "broker:x"

    # Only a principal releases it; claiming to be the broker's requester releases nothing.
    with pytest.raises(approvals.SelfApproval):
        approvals.approve(engine, settings, proposed.request["id"], "broker:cli:alice")
    released = approvals.approve(engine, settings, proposed.request["id"], "cli:alice")
    assert released["status"] == "pending"


# --- end to end: hand-built messages on the real broker -------------------------------------------------------


def _push(broker_url: str, task: str, *args, **kwargs) -> str:
    """LPUSH a Celery (protocol 2) message onto the provisioning queue, built by hand as any writer to Redis
    could: the envelope of kombu's Redis transport around a JSON body."""
    task_id = str(uuid.uuid4())
    body = json.dumps([list(args), kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
                    "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
                    "root_id": task_id, "parent_id": None, "argsrepr": repr(args), "kwargsrepr": repr(kwargs),
                    "origin": "attacker@nowhere", "ignore_result": False},
        "properties": {"correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": Queue.PROVISIONING.value},
                       "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }
    with redis.Redis.from_url(broker_url) as client:
        client.lpush(Queue.PROVISIONING.value, json.dumps(message))
    return task_id


def _membership_posts(sim) -> int:
    return sum(count for route, count in sim.stats()["by_route"].items()
               if route.startswith("POST") and "members" in route)


def _worker_log(fleet) -> str:
    return "\n".join(path.read_text(errors="replace") for path in Path(fleet.directory).glob("*.log"))


def _wait_logged(fleet, *needles: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(all(n in line for n in needles) for line in _worker_log(fleet).splitlines()):
        assert time.monotonic() < deadline, f"no worker log line with {needles}"
        time.sleep(0.2)


def test_forged_messages_for_every_provisioning_task_apply_nothing(fleet, fleet_engine, simulator):
    sim = simulator(TenantSpec(seed=53, users=30, admins=2, groups=5, apps=2))
    group = sim.dump()["groups"][0]
    user = next(u for u in sim.dump()["users"] if u["_id"] not in group["members"])
    name = new_connector(fleet, sim, '[connectors.provisioning]\nallowed_actions = ["group.add-member"]\n')
    assert sync_now(fleet, fleet_engine, name)["status"] == "succeeded"  # no approval rules at all
    sim.reset_stats()
    before = sim.dump()["groups"]
    unknown_id = uuid.uuid4().hex

    # Every provisioning task name, with the arguments that would do the most damage.
    forged = {
        TaskName.PROVISION_SUBMIT: lambda: _push(
            fleet.broker_url, TaskName.PROVISION_SUBMIT, connector=name, action="group.add-member",
            params={"group": group["name"], "user": user["email"]}, idempotency_key="forged",
            requested_by="cli:alice"),
        TaskName.PROVISION_APPLY: lambda: (_push(fleet.broker_url, TaskName.PROVISION_APPLY, proposal["id"]),
                                           _push(fleet.broker_url, TaskName.PROVISION_APPLY, unknown_id)),
        TaskName.PROVISION_RELAY: lambda: _push(fleet.broker_url, TaskName.PROVISION_RELAY),
        TaskName.PROVISION_EXPIRE: lambda: _push(fleet.broker_url, TaskName.PROVISION_EXPIRE),
    }
    assert set(forged) == {task for task in TaskName if task.queue is Queue.PROVISIONING}

    forged[TaskName.PROVISION_SUBMIT]()
    proposal = wait_status(fleet_engine, name, "forged", "awaiting_approval")
    assert proposal["requested_by"] == "broker:cli:alice"
    for task in (TaskName.PROVISION_APPLY, TaskName.PROVISION_RELAY, TaskName.PROVISION_EXPIRE):
        forged[task]()
    _wait_logged(fleet, "proposed over the broker", proposal["id"])
    _wait_logged(fleet, "not pending", proposal["id"], "awaiting_approval")
    _wait_logged(fleet, "not pending", unknown_id, "unknown id")
    time.sleep(2)  # the relay and expire messages, and anything they might send, have run

    assert find_request(fleet_engine, name, "forged")["status"] == "awaiting_approval"
    assert _membership_posts(sim) == 0
    assert sim.dump()["groups"] == before

    # Released by an authenticated principal, the same proposal is applied, once, however often it is sent.
    released = approve_and_send(fleet, fleet_engine, proposal["id"], approver="token:security-desk")
    assert released["status"] == "pending"
    for _ in range(2):
        _push(fleet.broker_url, TaskName.PROVISION_APPLY, proposal["id"])
    done = wait_request(fleet_engine, name, "forged")
    assert done["status"] == "succeeded", done
    time.sleep(1)
    assert _membership_posts(sim) == 1
    assert user["_id"] in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
