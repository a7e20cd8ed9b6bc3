"""Helpers for end-to-end tests that drive the real worker fleet by sending tasks by name."""

from __future__ import annotations

import itertools
import json
import time
import uuid

from config.actions import ACTION_NAMES
from models import queries
from models.states import ENDED_REQUEST_STATUSES
from provisioning import requests
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


def provision(fleet, engine, connector: str, action: str, timeout: float = 60, **params) -> dict:
    """Submit through ``jumpsync.provision.submit`` as any Celery client would, and wait for the outcome."""
    key = uuid.uuid4().hex
    fleet.send("jumpsync.provision.submit", queue="provisioning", connector=connector, action=action,
               params=params, idempotency_key=key, requested_by="tests")
    return wait_request(engine, connector, key, timeout)
