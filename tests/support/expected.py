"""What the database must hold after a sync, computed independently from the simulator's tenant dump.

This is the test oracle, so it does not call the connector's mapping code: it restates the rules from
docs/data-model.md in the plainest form, and the tests compare every resource and every grant against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.read_records import StoredGrant, StoredResource

BUILTIN_ROLE_IDS = {"administrator-with-billing", "administrator", "manager", "command-runner-with-billing",
                    "command-runner", "help-desk", "billing-only", "read-only"}


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def expected_user_status(user: dict) -> str:
    state = user.get("state")
    if state == "SUSPENDED" or user.get("suspended") is True:
        return "suspended"
    if user.get("account_locked") is True:
        return "locked"
    if not _blank(state):
        return {"ACTIVATED": "active", "STAGED": "staged"}.get(state, state.lower())
    return "staged" if user.get("activated") is False else "active"


def _role_id(name: str) -> str:
    return "-".join(re.findall(r"\w+", name.casefold()))


def _admin_roles(admin: dict) -> list[str]:
    if not _blank(admin.get("roleName")):
        return [admin["roleName"]]
    return [n for n in (admin.get("roleNames") or []) if not _blank(n)]


@dataclass
class Expected:
    resources: set[tuple[str, str]] = field(default_factory=set)                 # (type, id)
    grants: set[tuple[str, str, str, str, str, str | None]] = field(default_factory=set)
    user_status: dict[str, str] = field(default_factory=dict)
    user_email: dict[str, str | None] = field(default_factory=dict)
    admin_link: dict[str, str | None] = field(default_factory=dict)


def expected_state(dump: dict) -> Expected:
    out = Expected()
    emails: dict[str, list[str]] = {}
    for user in dump["users"]:
        out.resources.add(("user", user["_id"]))
        out.user_status[user["_id"]] = expected_user_status(user)
        email = None if _blank(user.get("email")) else user["email"].strip()
        out.user_email[user["_id"]] = email
        if email:
            emails.setdefault(email.casefold(), []).append(user["_id"])
    roles = set(BUILTIN_ROLE_IDS)
    for admin in dump["admins"]:
        out.resources.add(("admin", admin["_id"]))
        email = admin.get("email")
        matches = emails.get(email.strip().casefold(), []) if not _blank(email) else []
        out.admin_link[admin["_id"]] = matches[0] if len(matches) == 1 else None
        for name in _admin_roles(admin):
            roles.add(_role_id(name))
            out.grants.add(("role", _role_id(name), "assigned", "admin", admin["_id"], None))
    out.resources |= {("role", r) for r in roles}
    members: dict[str, list[str]] = {}
    for group in dump["groups"]:
        out.resources.add(("group", group["id"]))
        members[group["id"]] = list(group["members"])
        for user_id in group["members"]:
            out.grants.add(("group", group["id"], "member", "user", user_id, None))
    for app in dump["apps"]:
        out.resources.add(("app", app["_id"]))
        for user_id in app["users"]:
            out.grants.add(("app", app["_id"], "access", "user", user_id, None))
        for group_id in app["groups"]:
            out.grants.add(("app", app["_id"], "access", "group", group_id, None))
            for user_id in members.get(group_id, []):
                out.grants.add(("app", app["_id"], "access", "user", user_id, group_id))
    return out


def actual_state(resources: list[StoredResource], grants: list[StoredGrant]) -> Expected:
    """The same shape, read from what ``jumpsync resources/grants`` show (live rows only)."""
    out = Expected()
    for r in resources:
        if r.deleted:
            continue
        out.resources.add((r.type, r.id))
        if r.type == "user":
            out.user_status[r.id] = r.status
            out.user_email[r.id] = r.email
        if r.type == "admin":
            out.admin_link[r.id] = r.linked_user_id
    for g in grants:
        if not g.deleted:
            out.grants.add((g.resource_type, g.resource_id, g.entitlement, g.principal_type, g.principal_id, g.via))
    return out


def assert_same(actual: Expected, expected: Expected) -> None:
    """Compare everything, with a readable diff of what is missing and what is extra."""
    for name in ("resources", "grants"):
        a, e = getattr(actual, name), getattr(expected, name)
        missing, extra = sorted(e - a)[:10], sorted(a - e)[:10]
        assert a == e, f"{name}: {len(e - a)} missing e.g. {missing}; {len(a - e)} extra e.g. {extra}"
    assert actual.user_status == expected.user_status
    assert actual.user_email == expected.user_email
    assert actual.admin_link == expected.admin_link
