"""Which parts a sync run has: one fetch part per configured resource type, and the derived parts whose inputs
the run fetches."""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import ConnectorConfig
from connector import FETCH_SYNCERS

#: Derived parts: name -> the fetch parts whose data they read. They run in the finalizer, in this order.
DERIVED_PARTS: dict[str, tuple[str, ...]] = {
    "role": ("admin",),
    "admin_link": ("admin", "user"),
    "app_via_group": ("app", "group"),
}


@dataclass(frozen=True)
class PartPlan:
    fetch: tuple[str, ...]
    derive: tuple[str, ...]


def plan_parts(connector: ConnectorConfig) -> PartPlan:
    """Which parts a run of this connector has, from its ``resource_types``."""
    types = set(connector.resource_types)
    fetch = tuple(t for t in FETCH_SYNCERS if t in types)
    derive = tuple(name for name, inputs in DERIVED_PARTS.items()
                   if set(inputs) <= types and (name != "role" or "role" in types))
    return PartPlan(fetch=fetch, derive=derive)
