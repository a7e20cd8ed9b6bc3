"""The provisioning actions by name, without their parameter models, and the longest text a request records.

The settings (a connector's ``allowed_actions``) and the command line need only the names, and every CLI command
loads the settings: the pydantic models of ``provisioning.params`` stay out of their start-up.
``provisioning.params`` checks at import that its models cover exactly these actions, in this order.
"""

from __future__ import annotations

ACTION_NAMES: tuple[str, ...] = (
    "group.add-member", "group.remove-member", "app.grant", "app.revoke", "role.set",
    "user.create", "user.activate", "user.suspend", "user.unsuspend", "user.delete",
)

#: Off unless a connector's policy names them: they destroy data or widen an admin's power.
DESTRUCTIVE_ACTIONS: frozenset[str] = frozenset({"user.delete", "role.set"})
DEFAULT_ALLOWED_ACTIONS: tuple[str, ...] = tuple(a for a in ACTION_NAMES if a not in DESTRUCTIVE_ACTIONS)

#: The longest idempotency key, requester or on_behalf_of a request records (the columns' length), and the
#: longest reference a parameter may hold: the CLI, bulk files, the HTTP schema and ``requests.accept`` check it.
MAX_TEXT = 256
