"""Provisioning load for a scenario and its accounting: which changes were asked, which reached an outcome,
which are in JumpCloud, which JumpCloud applied more than once.

Every change of the suite touches a user no other change touches, so that each asked change is one Directory
Insights event: two events for one (op, group or app, user) mean the change was applied twice, and an event for
a change no request of the scenario asked is one from earlier applied again.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from models.states import ENDED_REQUEST_STATUSES, RequestStatus
from models.tables import ProvisioningRequest
from tests.support.constants import ROOT

#: The writes the load makes, by route (the simulator's stats): what the workers sent, retries included.
WRITE_ROUTES = ("POST /api/v2/usergroups/{id}/members", "POST /api/v2/applications/{id}/associations")


@dataclass(frozen=True)
class Change:
    key: str
    action: str    # group.add-member, group.remove-member, app.grant, app.revoke
    target: str    # the group's or the app's id
    user: str

    @property
    def params(self) -> dict[str, str]:
        kind = "group" if self.action.startswith("group.") else "app"
        return {kind: self.target, "user": self.user}

    @property
    def adds(self) -> bool:
        return self.action in ("group.add-member", "app.grant")

    @property
    def event(self) -> tuple[str, str, str]:
        """(op, from, to) of the Directory Insights event JumpCloud records when it applies the change."""
        return ("add" if self.adds else "remove", self.target, self.user)

    def in_tenant(self, dump: dict) -> bool:
        """Whether JumpCloud holds the state the change asked for."""
        if self.action.startswith("group."):
            members = next(g["members"] for g in dump["groups"] if g["id"] == self.target)
        else:
            members = next(a["users"] for a in dump["apps"] if a["_id"] == self.target)
        return (self.user in members) == self.adds


def plan_changes(dump: dict, count: int, used: set[str]) -> list[Change]:
    """``count`` changes on users not in ``used`` (added to it): adds and removals of group members, grants and
    revocations of app access, in turn (a revocation where the user has a direct grant, else a grant)."""
    groups_of: dict[str, list[str]] = {}
    for group in dump["groups"]:
        for user in group["members"]:
            groups_of.setdefault(user, []).append(group["id"])
    apps_of: dict[str, list[str]] = {}
    for app in dump["apps"]:
        for user in app["users"]:
            apps_of.setdefault(user, []).append(app["_id"])
    group_ids = [g["id"] for g in dump["groups"]]
    app_ids = [a["_id"] for a in dump["apps"]]
    changes: list[Change] = []
    kinds = itertools.cycle(("group.add-member", "group.remove-member", "app.grant", "app.revoke"))
    for user in (u["_id"] for u in dump["users"]):
        if len(changes) == count:
            break
        if user in used:
            continue
        used.add(user)
        kind, n = next(kinds), len(changes)
        if kind == "group.remove-member" and groups_of.get(user):
            target = groups_of[user][0]
        elif kind == "app.revoke" and apps_of.get(user):
            target = apps_of[user][0]
        elif kind.startswith("group."):
            kind, target = "group.add-member", next(g for g in itertools.islice(itertools.cycle(group_ids), n, None)
                                                    if g not in groups_of.get(user, []))
        else:
            kind, target = "app.grant", next(a for a in itertools.islice(itertools.cycle(app_ids), n, None)
                                             if a not in apps_of.get(user, []))
        changes.append(Change(uuid.uuid4().hex, kind, target, user))
    assert len(changes) == count, f"only {len(changes)} users left for {count} changes"
    return changes


class Load:
    """The client process (``tests.chaos.client``) submitting ``changes``, request i ``after[i]`` seconds from
    its start."""

    def __init__(self, directory: Path, name: str, env: dict[str, str], connector: str, changes: list[Change],
                 after: list[float], deadline: float) -> None:
        self.changes = changes
        self.out = directory / f"{name}.accepted.jsonl"
        plan = directory / f"{name}.plan.json"
        plan.write_text(json.dumps({"connector": connector, "deadline": deadline, "requests": [
            {"key": c.key, "action": c.action, "params": c.params, "after": a} for c, a in zip(changes, after, strict=True)]}))
        self.out.unlink(missing_ok=True)
        with open(directory / f"{name}.client.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.client", str(plan), str(self.out)],
                                         env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def done(self) -> bool:
        """The client has submitted everything (or given up)."""
        return self.proc.poll() is not None

    def accepted(self) -> dict[str, str | None]:
        """Idempotency key -> request id (None: the client gave up on it)."""
        if not self.out.exists():
            return {}
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        return {line["key"]: line["id"] for line in lines}

    def retried(self) -> int:
        """Submissions that needed more than one try (jumpsync refused them while a server was down)."""
        if not self.out.exists():
            return 0
        return sum(json.loads(line)["tries"] > 1 for line in self.out.read_text().splitlines() if line.strip())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def outcomes(engine: Engine, connector: str, keys: list[str]) -> dict[str, str]:
    """Idempotency key -> the request's status, for the requests recorded."""
    with Session(engine) as session:
        rows = session.execute(select(col(ProvisioningRequest.idempotency_key), col(ProvisioningRequest.status))
                               .where(col(ProvisioningRequest.connector) == connector,
                                      col(ProvisioningRequest.idempotency_key).in_(keys))).all()
    return {key: status for key, status in rows}


def all_ended(statuses: dict[str, str], keys: list[str]) -> bool:
    return all(statuses.get(key) in ENDED_REQUEST_STATUSES for key in keys)


@dataclass(frozen=True)
class Accounting:
    lost: int              # asked, and no outcome or not in JumpCloud
    failed: int            # an outcome other than succeeded
    duplicated: int        # applied more than once, or applied again though asked earlier
    writes: int            # write requests the workers sent for them (retries included)


def account(changes: list[Change], statuses: dict[str, str], dump: dict, events: list[dict],
            writes: int) -> Accounting:
    ended = [c for c in changes if statuses.get(c.key) in ENDED_REQUEST_STATUSES]
    succeeded = [c for c in ended if statuses[c.key] == RequestStatus.SUCCEEDED]
    lost = (len(changes) - len(ended)) + sum(not c.in_tenant(dump) for c in succeeded)
    applied = Counter(_event_key(e) for e in events if e.get("event_type") == "association_change")
    asked = {c.event for c in changes}
    duplicated = sum(n - (1 if key in asked else 0) for key, n in applied.items())
    return Accounting(lost=lost, failed=len(ended) - len(succeeded), duplicated=duplicated, writes=writes)


def _event_key(event: dict) -> tuple[str, str, str]:
    association = event["association"]
    return (association["op"], association["connection"]["from"]["object_id"],
            association["connection"]["to"]["object_id"])


def insights_events(base_url: str, api_key: str, since: datetime, timeout: float = 60) -> list[dict]:
    """Every Directory Insights event since ``since``, read as a client reads them (pages of 10,000)."""
    events: list[dict] = []
    body: dict = {"service": ["directory"], "start_time": since.isoformat().replace("+00:00", "Z"), "limit": 10_000}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.post(f"{base_url}/insights/directory/v1/events", json=body,
                              headers={"x-api-key": api_key}, timeout=30)
        response.raise_for_status()
        page = response.json()
        events += page
        if len(page) < body["limit"]:
            return events
        body["search_after"] = json.loads(response.headers["X-Search_after"])
    raise AssertionError(f"the events were not read within {timeout}s")
