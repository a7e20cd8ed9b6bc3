"""Admin roles. JumpCloud has no role-listing endpoint, so roles are the built-in ones plus any other role
name found on an admin, matched case-insensitively (sources disagree on the case of "With")."""

from __future__ import annotations

import re
from collections.abc import Iterable

from connector.records import GrantRecord, ResourceRecord

BUILTIN_ROLES = (
    "Administrator With Billing",
    "Administrator",
    "Manager",
    "Command Runner With Billing",
    "Command Runner",
    "Help Desk",
    "Billing Only",
    "Read Only",
)


def role_id(name: str) -> str:
    """A stable id for a role name: its case-folded words joined by dashes ("administrator-with-billing")."""
    return "-".join(re.findall(r"\w+", name.casefold())) or "unnamed"


_BUILTIN_BY_ID = {role_id(name): name for name in BUILTIN_ROLES}


def derive_roles(admin_roles: Iterable[tuple[str, list[str]]]) -> tuple[list[ResourceRecord], list[GrantRecord]]:
    """Role resources and ``assigned`` grants from (admin id, role names) pairs.

    Built-in roles always exist. A custom role is named by the first of its spellings in sorted order, so the
    name does not flip between syncs when two admins spell it differently.
    """
    spellings: dict[str, set[str]] = {}
    grants: dict[tuple[str, str], GrantRecord] = {}
    for admin_id, names in admin_roles:
        for name in names:
            rid = role_id(name)
            spellings.setdefault(rid, set()).add(name.strip())
            grants[(rid, admin_id)] = GrantRecord("role", rid, "assigned", "admin", admin_id)
    resources = [ResourceRecord(type="role", id=rid, name=name, profile={"builtin": True})
                 for rid, name in _BUILTIN_BY_ID.items()]
    resources += [ResourceRecord(type="role", id=rid, name=sorted(names)[0], profile={"builtin": False})
                  for rid, names in sorted(spellings.items()) if rid not in _BUILTIN_BY_ID]
    return resources, sorted(grants.values(), key=lambda g: (g.resource_id, g.principal_id))
