"""Order per target: requests that change the same account apply one at a time, in the order they were recorded.

A provisioning worker applies many requests at once (Celery's thread pool, an event loop per thread). Two
requests on one membership must not race: "add alice to Engineering" then "remove her" must end with her out,
whichever worker takes which. Every request that changes something is recorded with its **target**: the account
it changes (memberships, app access and lifecycle of a user: the user; app access of a user group: the group; a
role: the admin). One target, one line:

| rule | where |
|---|---|
| a request is claimed only when no other request on its target is running and none recorded before it is pending | ``requests.claim_on`` (``AHEAD_IN_LINE``) |
| a request whose claim found another ahead leaves its message be: it stays pending | ``runner.execute`` |
| whoever records an outcome hands the target to the first pending request on it (unless that is itself, back to pending to retry later: its own delayed message takes it) | ``next_in_line``, ``tasks.provision`` |
| a message lost on the way is the relay's, as any | ``requests.due_for_relay`` |

Serialising per account (not per membership) also keeps a joiner's ``user.create`` ahead of the memberships
asked for the new account. A request awaiting approval does not hold its target: only pending and running
requests do, so an approval days later never stalls the requests recorded meanwhile. Dry runs change nothing
and have no target.

The target is the account's JumpCloud id when the synced database knows the name (so ``alice@example.com`` and
her id are one target), else the name as typed, case-folded. A request that names an account the database does
not know yet by id, and another by email, are two targets until a sync has stored the account.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, exists, or_, select

from config.actions import MAX_TEXT
from jumpcloud.ids import is_object_id
from models import resolver
from models.states import RequestStatus
from models.tables import ProvisioningRequest, table_of
from provisioning.params import AppAccessParams, Params, RoleParams, UserCreateParams

_REQUESTS = table_of(ProvisioningRequest)
_AHEAD = _REQUESTS.alias("ahead")


def subject(params: Params) -> tuple[str, str] | None:
    """``(resource type, reference)`` of what a request changes, as typed."""
    if isinstance(params, RoleParams):
        return "admin", params.admin
    if isinstance(params, UserCreateParams):
        return "user", params.email
    if isinstance(params, AppAccessParams) and params.group is not None:
        return "group", params.group
    user = getattr(params, "user", None)
    return ("user", user) if isinstance(user, str) else None


def target_key(connection: Connection, connector_id: int, params: Params) -> str | None:
    """The request's target, ``type:id`` (or ``type:name`` as typed, case-folded, for a name the synced database
    does not know as one resource); None for parameters that change no account."""
    found = subject(params)
    if found is None:
        return None
    kind, ref = found
    ref = ref.strip()
    if not is_object_id(ref):
        ids = {row.external_id for row in resolver.matches(connection, connector_id, kind, ref)}
        ref = ids.pop() if len(ids) == 1 else ref.casefold()
    return f"{kind}:{ref}"[:MAX_TEXT]


#: True when another request on the claimed row's target is running, or was recorded before it and is pending.
#: Used in the claim's WHERE clause, correlated with the row being claimed.
AHEAD_IN_LINE = exists().where(
    _AHEAD.c.connector == _REQUESTS.c.connector, _AHEAD.c.target_key == _REQUESTS.c.target_key,
    _AHEAD.c.id != _REQUESTS.c.id,
    or_(_AHEAD.c.status == RequestStatus.RUNNING,
        and_(_AHEAD.c.status == RequestStatus.PENDING,
             or_(_AHEAD.c.created_at < _REQUESTS.c.created_at,
                 and_(_AHEAD.c.created_at == _REQUESTS.c.created_at, _AHEAD.c.id < _REQUESTS.c.id)))))


def next_in_line(connection: Connection, connector: str, key: str | None, request_id: str) -> str | None:
    """The first pending request on the target, to be sent now that the target is free: None if there is none,
    or if it is ``request_id`` itself (back to pending to retry later: its own delayed message takes it)."""
    if key is None:
        return None
    first = connection.execute(
        select(_REQUESTS.c.id).where(_REQUESTS.c.connector == connector, _REQUESTS.c.target_key == key,
                                     _REQUESTS.c.status == RequestStatus.PENDING)
        .order_by(_REQUESTS.c.created_at, _REQUESTS.c.id).limit(1)).scalar_one_or_none()
    return None if first == request_id else first
