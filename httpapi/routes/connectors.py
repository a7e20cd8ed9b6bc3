"""``/v1/connectors``: the read-only views a portal needs, as the CLI's JSON shows them (docs/cli-json.md):
every connector's status (``jumpsync status --json``), a person's access (``jumpsync access --json``) and who
holds a group, app or role (``jumpsync who-has --json``). Scope ``read:<connector>``; nothing calls JumpCloud.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path

from access import queries
from auth.scopes import Verb
from httpapi.errors import ApiError, invalid, not_found
from httpapi.principals import Caller, require
from httpapi.schemas import CONNECTOR_PATTERN, PRINTABLE, ConnectorKey, errors
from jumpsync.status import connector_status
from models.queries import UnknownConnector
from models.resolver import Ambiguous, NotFound
from worker import runtime

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])

ConnectorName = Annotated[str, Path(pattern=CONNECTOR_PATTERN, description="The connector's name."), ConnectorKey]


@router.get("", response_model=list[dict[str, Any]], responses=errors(401),
            summary="Every connector the token may read: last run, next sync, counts (as `jumpsync status --json`)")
def status(caller: Caller) -> list[dict[str, Any]]:
    return [entry for entry in connector_status() if caller.may(Verb.READ, entry["connector"])]


def _query(fn: Callable[..., dict[str, Any]], connector: str, what: str) -> dict[str, Any]:
    """An access query; an unknown connector or name is 404 (with the closest names), an ambiguous one 409."""
    try:
        return fn(runtime.engine(), connector, what)
    except UnknownConnector as exc:
        raise not_found(str(exc)) from None
    except NotFound as exc:
        raise not_found(str(exc), candidates=exc.candidates) from None
    except Ambiguous as exc:
        raise ApiError(409, "ambiguous", str(exc), candidates=exc.candidates) from None
    except ValueError as exc:
        raise invalid(str(exc)) from None


@router.get("/{connector}/access/{person}", response_model=dict[str, Any], responses=errors(401, 403, 404, 409, 422),
            summary="Every group, app and role a person holds, and why (as `jumpsync access --json`)")
def access(connector: ConnectorName, caller: Caller,
           person: Annotated[str, Path(max_length=256, pattern=PRINTABLE,
                                       description="A user or admin id, an email or a username.")]) -> dict[str, Any]:
    require(caller, Verb.READ, connector)
    return _query(queries.access, connector, person)


@router.get("/{connector}/holders/{target}", response_model=dict[str, Any],
            responses=errors(401, 403, 404, 409, 422),
            summary="Everyone who holds a group, app or role, and why (as `jumpsync who-has --json`)")
def holders(connector: ConnectorName, caller: Caller,
            target: Annotated[str, Path(max_length=300, pattern=PRINTABLE,
                                        description="app:NAME, group:NAME or role:NAME (NAME: a name or an id).")],
            ) -> dict[str, Any]:
    require(caller, Verb.READ, connector)
    return _query(queries.who_has, connector, target)
