"""Everything one running simulator holds: the orgs, the API key, fault knobs and request counters.

Kept apart from the app so tests and the CLI can build a state, hand it to `create_app`, and inspect or change
it afterwards. All mutation happens on the server's event loop (handlers never await between reading and
writing), so no locks are needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulator.faults import Faults
from simulator.model import Tenant


@dataclass
class Stats:
    """Counters of /api requests (the /_sim endpoints are not counted)."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def started(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self, route: str, status: int) -> None:
        self.in_flight -= 1
        self.requests += 1
        self.by_status[status] += 1
        self.by_route[route] += 1

    def reset(self) -> None:
        """Zero the counters; requests still running keep counting as in flight."""
        self.requests = 0
        self.by_status.clear()
        self.by_route.clear()
        self.by_fault.clear()
        self.max_in_flight = self.in_flight

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_route": dict(sorted(self.by_route.items())),
            "by_fault": dict(sorted(self.by_fault.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


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

    @property
    def single_org(self) -> Tenant:
        return next(iter(self.orgs.values()))
