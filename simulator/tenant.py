"""The data of one JumpCloud organisation: the `Tenant` store and its deterministic generator.

This module is the public entry point named in docs/architecture.md; the store lives in `simulator.model`
and the generator in `simulator.generator`, so each stays small.
"""

from simulator.generator import BUILTIN_ROLES, TenantSpec, generate_tenant
from simulator.model import Conflict, Missing, OrderedIdSet, Tenant

__all__ = ["BUILTIN_ROLES", "Conflict", "Missing", "OrderedIdSet", "Tenant", "TenantSpec", "generate_tenant"]
