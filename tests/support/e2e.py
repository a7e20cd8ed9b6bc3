"""Helpers for end-to-end tests that drive the real worker fleet by sending tasks by name."""

from __future__ import annotations

import itertools
import json
import time
import uuid

from config.actions import ACTION_NAMES
from config.settings import load_settings
from models import queries
from models.states import ENDED_REQUEST_STATUSES
from provisioning import approvals, requests
from tests.support.expected import actual_state

_names = itertools.count()

#: A connector policy allowing every action, the destructive ones included.
ALL_ACTIONS_POLICY = f"[connectors.provisioning]\nallowed_actions = {json.dumps(list(ACTION_NAMES))}\n"


def new_connector(fleet, sim, extra: str = "") -> str:
    name = f"e2e-{next(_names)}"
    fleet.add_connector(name, sim.url, extra)
    return name


def wait_run(engine, task_id: str, timeout: float = 120) -> dict:
    """The run, once it ended, as ``sync --wait --json`` prints it."""
    run = queries.wait_for_run(engine, task_id, timeout)
    assert run is not None, f"run of task {task_id} did not end within {timeout}s: {queries.run_by_task_id(engine, task_id)}"
    return run.to_json()


def sync_now(fleet, engine, name: str) -> dict:
    run = wait_run(engine, fleet.send("jumpsync.sync.connector", name, trigger="manual").id)
    if run["status"] != "succeeded":  # shown with a failing test (pytest cuts the run out of its assertion)
        print(f"run {run['id']} of {name}: {run['status']}, error {run.get('error')!r}")
        for part in run.get("parts", []):
            print(f"  part {part['name']}: {part['status']} {part.get('error') or ''}")
    return run


def state(engine, name):
    return actual_state(queries.resources(engine, name), queries.grants(engine, name))


def find_request(engine, connector: str, key: str) -> dict | None:
    return next((r for r in requests.listing(engine, connector=connector, limit=1000)
                 if r["idempotency_key"] == key), None)


def wait_request(engine, connector: str, key: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = find_request(engine, connector, key)
        if current and current["status"] in ENDED_REQUEST_STATUSES:
            return current
        time.sleep(0.1)
    raise AssertionError(f"request {key} of {connector} did not end within {timeout}s: {current}")


def wait_status(engine, connector: str, key: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = find_request(engine, connector, key)
        if current and current["status"] == status:
            return current
        time.sleep(0.1)
    raise AssertionError(f"request {key} of {connector} is not {status} after {timeout}s: {current}")


def approve_and_send(fleet, engine, request_id: str, approver: str = "cli:tests") -> dict:
    """Approve as an authenticated principal would, and send the released request to the workers."""
    decided = approvals.approve(engine, load_settings(fleet.config_path), request_id, approver)
    if decided["status"] == "pending":
        fleet.send("jumpsync.provision", request_id, queue="provisioning")
    return decided


def release(fleet, engine, connector: str, key: str, timeout: float = 60) -> dict:
    """Wait until a request sent over the broker is recorded; if it awaits approval (every valid one does: a
    broker message grants nothing), approve it as a CLI user and send it to the workers. The request as found."""
    deadline = time.monotonic() + timeout
    while (current := find_request(engine, connector, key)) is None:
        assert time.monotonic() < deadline, f"request {key} of {connector} not recorded within {timeout}s"
        time.sleep(0.05)
    if current["status"] == "awaiting_approval":
        approve_and_send(fleet, engine, current["id"])
    return current


def provision(fleet, engine, connector: str, action: str, timeout: float = 60, **params) -> dict:
    """Submit through ``jumpsync.provision.submit`` as any Celery client would, approve it as a CLI user, and
    wait for the outcome."""
    key = uuid.uuid4().hex
    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=connector, action=action,
               params=params, idempotency_key=key, requested_by="tests")
    release(fleet, engine, connector, key, timeout)
    return wait_request(engine, connector, key, timeout)
