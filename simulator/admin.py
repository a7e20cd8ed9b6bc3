"""Driving a running simulator through its ``/_sim`` admin endpoints (loopback only, no API key): the tenant dump,
request counters, fault knobs and the orgs. One home for the tests' in-thread simulator (``tests/support/simulators.py``)
and the benchmark's simulator process (``bench/fleet.py``), which both mix it in."""

from __future__ import annotations

import httpx


class SimulatorAdmin:
    """Mixed into anything with a ``url`` of a running simulator."""

    url: str
    #: Seconds per admin request: a dump of a 100k-user tenant takes a while.
    admin_timeout: float = 300.0

    def sim(self, method: str, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("timeout", self.admin_timeout)
        response = httpx.request(method, self.url + path, **kwargs)
        response.raise_for_status()
        return response

    def dump(self) -> dict:
        """The whole tenant (``GET /_sim/tenant``): what a full sync must end up with."""
        return self.sim("GET", "/_sim/tenant").json()

    def stats(self) -> dict:
        return self.sim("GET", "/_sim/stats").json()

    def reset_stats(self) -> None:
        self.sim("POST", "/_sim/stats/reset")

    def set_faults(self, faults: dict) -> None:
        self.sim("PUT", "/_sim/faults", json=faults)

    def clear_faults(self) -> None:
        self.sim("DELETE", "/_sim/faults")

    def set_latency(self, latency_ms: float) -> None:
        self.set_faults({"latency_ms": latency_ms})

    def orgs(self) -> dict:
        """``GET /_sim/orgs``: ``{"multi_tenant", "orgs", "removed", "names"}``."""
        return self.sim("GET", "/_sim/orgs").json()

    def add_org(self, **fields) -> dict:
        """A generated org added to a multi-tenant simulator (``seed``, ``users``... ``display_name``, ``org_id``):
        ``{"org_id", "display_name"}``."""
        return self.sim("POST", "/_sim/orgs", json=fields).json()

    def rename_org(self, org_id: str, display_name: str) -> None:
        self.sim("PATCH", f"/_sim/orgs/{org_id}", json={"display_name": display_name})

    def remove_org(self, org_id: str) -> None:
        """The org disappears (404 for its requests, left out of ``GET /api/organizations``), data kept."""
        self.sim("DELETE", f"/_sim/orgs/{org_id}")

    def restore_org(self, org_id: str) -> None:
        self.sim("POST", f"/_sim/orgs/{org_id}/restore")
