"""Everything one running simulator holds: the orgs, the API key, fault knobs, request counters and the event log.

Kept apart from the app so tests and the CLI can build a state, hand it to `create_app`, and inspect or change
it afterwards. All mutation happens on the server's event loop (handlers never await between reading and
writing), so no locks are needed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from simulator.faults import Faults
from simulator.model import Conflict, Missing, Tenant


@dataclass
class Stats:
    """Counters of /api requests (the /_sim endpoints are not counted). `by_fault` counts injected faults by kind
    (rule, rate_limit, error_rate, delay, drop, truncate, malformed, total_delta, mutate, revoked_key,
    removed_org); a request can carry more than one (a delayed 503 counts as delay and rule)."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    #: The most requests started within one second (buckets of whole seconds of the clock): what a client-side
    #: rate limit is checked against.
    max_per_second: int = 0
    _second: int = -1
    _this_second: int = 0

    def started(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._this_second = second, 0
        self._this_second += 1
        self.max_per_second = max(self.max_per_second, self._this_second)

    def answered(self, route: str, status: int) -> None:
        """Count a request as its answer starts, before the client can have read it: a client that reads the
        stats after its last response finds that response counted."""
        self.requests += 1
        self.by_status[status] += 1
        self.by_route[route] += 1

    def finished(self) -> None:
        self.in_flight -= 1

    def reset(self) -> None:
        """Zero the counters; requests still running keep counting as in flight."""
        self.requests = 0
        self.by_status.clear()
        self.by_route.clear()
        self.by_fault.clear()
        self.max_in_flight = self.in_flight
        self.max_per_second = self._second = self._this_second = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_route": dict(sorted(self.by_route.items())),
            "by_fault": dict(sorted(self.by_fault.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_per_second": self.max_per_second,
        }


class EventLog:
    """What the simulator did to the data and to requests, in order: every injected fault, every record a rule
    added or removed, key and org changes. Bounded (oldest dropped); `seq` keeps counting across clears."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = 0

    def add(self, kind: str, **detail: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"seq": self._seq, "time": round(time.time(), 3), "kind": kind, **detail}
        self._events.append(event)
        return event

    def since(self, seq: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._events if e["seq"] > seq and (kind is None or e["kind"] == kind)]

    def clear(self) -> None:
        self._events.clear()

    @property
    def last(self) -> int:
        return self._seq


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class SimulatorState:
    """`multi_tenant=False`: one org, `x-org-id` optional (403 if it names another org).
    `multi_tenant=True`: `x-org-id` required on every /api request."""

    orgs: dict[str, Tenant]
    api_key: str
    multi_tenant: bool = False
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    sim_loopback_only: bool = True  # /_sim endpoints answer loopback clients only
    events: EventLog = field(default_factory=EventLog)
    revoked_keys: set[str] = field(default_factory=set)  # sha256 of keys that no longer work (401, counted)
    removed_orgs: set[str] = field(default_factory=set)  # orgs that "disappeared": 404, data kept for /_sim

    def __post_init__(self) -> None:
        if not self.orgs:
            raise ValueError("a simulator needs at least one org")
        if not self.multi_tenant and len(self.orgs) != 1:
            raise ValueError("single-tenant mode takes exactly one org; set multi_tenant=True for more")
        if not self.api_key:
            raise ValueError("an API key is required")
        for org_id, tenant in self.orgs.items():
            if tenant.org_id != org_id:
                raise ValueError(f"org key {org_id} differs from its tenant's org_id {tenant.org_id}")
            tenant.insights.faults = self.faults.insights

    @property
    def single_org(self) -> Tenant:
        return next(iter(self.orgs.values()))

    # ---- faults that change the state (/_sim and rules) ---------------------------------------------

    def fault(self, kind: str, method: str, path: str, **detail: Any) -> None:
        """Count an injected fault and log it."""
        self.stats.by_fault[kind] += 1
        self.events.add("fault", fault=kind, method=method, path=path, **detail)

    def replace_key(self, new_key: str | None, by: str) -> None:
        """Revoke the current key; `new_key` (None: a random one nobody knows) is accepted from now on. A key
        revoked earlier works again when it is set anew."""
        if new_key is not None and not new_key:
            raise ValueError("an API key is required")
        self.revoked_keys.add(key_digest(self.api_key))
        self.api_key = new_key if new_key is not None else secrets.token_hex(20)
        self.revoked_keys.discard(key_digest(self.api_key))
        self.events.add("key_revoked", by=by, replaced=new_key is not None)

    def is_revoked(self, key: str) -> bool:
        return bool(key) and key_digest(key) in self.revoked_keys

    def remove_org(self, org_id: str, by: str) -> None:
        org_id = org_id.lower()
        if org_id not in self.orgs:
            raise KeyError(org_id)
        if org_id not in self.removed_orgs:
            self.removed_orgs.add(org_id)
            self.events.add("org_removed", org=org_id, by=by)

    def restore_org(self, org_id: str) -> None:
        org_id = org_id.lower()
        if org_id not in self.orgs:
            raise KeyError(org_id)
        if org_id in self.removed_orgs:
            self.removed_orgs.discard(org_id)
            self.events.add("org_restored", org=org_id)

    def add_org(self, tenant: Tenant, by: str) -> None:
        """A new org the key reaches from now on (multi-tenant mode only), wired as `__post_init__` wires the
        first ones. ValueError in single-tenant mode, Conflict when the org id is taken."""
        if not self.multi_tenant:
            raise ValueError("single-tenant mode holds exactly one org; start the simulator multi-tenant "
                             "(several orgs or --multi-tenant) to add orgs")
        org_id = tenant.org_id.lower()
        if tenant.org_id != org_id:
            raise ValueError(f"org id {tenant.org_id} must be lowercase")
        if org_id in self.orgs:
            raise Conflict(f"org {org_id} exists")
        tenant.insights.faults = self.faults.insights
        self.orgs[org_id] = tenant
        self.events.add("org_added", org=org_id, display_name=tenant.display_name, by=by)

    def rename_org(self, org_id: str, display_name: str, by: str) -> Tenant:
        """Give an org (removed ones too) a new `displayName`; Missing for an unknown org."""
        tenant = self.orgs.get(org_id.lower())
        if tenant is None:
            raise Missing(f"unknown org {org_id}")
        old, tenant.display_name = tenant.display_name, display_name
        self.events.add("org_renamed", org=tenant.org_id, old=old, display_name=display_name, by=by)
        return tenant

    def listed_orgs(self) -> list[Tenant]:
        """The orgs `GET /api/organizations` lists: every org the key reaches, removed ones left out."""
        return [t for org_id, t in self.orgs.items() if org_id not in self.removed_orgs]
