"""The JumpCloud connector: one syncer per fetched resource type, and the derived ones (roles, links).

``FETCH_SYNCERS`` and the syncer classes are imported on first use (PEP 562): the syncers bring in the HTTP
client (httpx), which the access commands, reading ``connector.records`` only, start faster without.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: The resource types fetched from the API, each by its own syncer (roles are derived from admins):
#: type -> (module, class).
_SYNCERS = {
    "user": ("connector.users", "UserSyncer"),
    "admin": ("connector.admins", "AdminSyncer"),
    "group": ("connector.groups", "GroupSyncer"),
    "app": ("connector.apps", "AppSyncer"),
}
_MODULE_OF = {cls: module for module, cls in _SYNCERS.values()}


def __getattr__(name: str) -> Any:
    if name == "FETCH_SYNCERS":
        value: Any = {kind: getattr(import_module(module), cls) for kind, (module, cls) in _SYNCERS.items()}
    elif name in _MODULE_OF:
        value = getattr(import_module(_MODULE_OF[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once
    return value
