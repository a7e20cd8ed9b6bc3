"""Which requests need approval: a connector's ``[[connectors.provisioning.approval]]`` rules, applied to one request.

A rule names actions and target patterns (config.connector.ApprovalRule); the strictest matching rule wins (two
approvers over one). Patterns are globs matched case-insensitively against the NAME of what the request changes
(the group, app, role or user), as given and as the synced database knows it: a request that names its target by
id is matched by that resource's names. An id the database does not know matches every pattern: nothing shows
it is not an admin group, so the request waits for approval (fail closed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from sqlalchemy import Connection

from config.connector import ProvisioningPolicy
from jumpcloud.ids import is_object_id
from models import resolver
from provisioning.params import Params

#: The parameters that name what an action changes, and the kind of resource they name.
TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    "group.add-member": (("group", "group"),), "group.remove-member": (("group", "group"),),
    "app.grant": (("app", "app"),), "app.revoke": (("app", "app"),),
    "role.set": (("role", "role"),),
    "user.create": (("username", "user"), ("email", "user")),
    "user.activate": (("user", "user"),), "user.suspend": (("user", "user"),),
    "user.unsuspend": (("user", "user"),), "user.delete": (("user", "user"),),
}


def target_names(connection: Connection, connector_id: int, action: str, params: Params) -> set[str] | None:
    """The names of what ``params`` changes: each reference as given and the names, emails and (apps) template
    names of the synced resources it names, deleted ones included. None when a reference is an id that the
    database does not know: its name cannot be checked."""
    names: set[str] = set()
    for field, kind in TARGETS.get(action, ()):
        ref = getattr(params, field, None)
        if not isinstance(ref, str):
            continue
        rows = resolver.matches(connection, connector_id, kind, ref, live=False)
        if is_object_id(ref) and not rows:
            return None
        names.add(ref)
        for row in rows:
            names.update(text for text in (row.name, row.email) if text)
            template = (row.profile or {}).get("template")
            if isinstance(template, str):
                names.add(template)
    return names


def _matches(patterns: Iterable[str], names: set[str] | None) -> bool:
    if names is None:
        return True  # fail closed: an unknown id may name anything
    return any(fnmatch.fnmatchcase(name.casefold(), pattern.casefold()) for pattern in patterns for name in names)


def approvers_required(connection: Connection, connector_id: int, policy: ProvisioningPolicy, action: str,
                       params: Params) -> int:
    """How many approvers the strictest rule matching this request wants; 0 when none matches."""
    rules = [rule for rule in policy.approval if action in rule.actions]
    if not rules:
        return 0
    names = target_names(connection, connector_id, action, params)
    return max((rule.approvers for rule in rules if _matches(rule.targets, names)), default=0)
