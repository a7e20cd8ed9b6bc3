"""``/v1/audit``: the provisioning audit trail (``provisioning.audit``), as ``jumpsync audit --jsonl`` shows it.

A token reads the trail of the connectors it may read (``read:<connector>``), as it lists their requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from auth.scopes import Verb
from httpapi.errors import invalid, not_found
from httpapi.principals import Caller, require
from httpapi.routes.requests import known_connectors, readable_connectors
from httpapi.schemas import CONNECTOR_PATTERN, AuditEventView, ConnectorKey, errors
from models.columns import as_utc
from provisioning.audit import events
from worker import runtime

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _utc(name: str, value: datetime | None) -> datetime | None:
    try:
        return as_utc(value) if value is not None else None
    except OverflowError:  # an offset that takes it past the first or last representable time
        raise invalid(f"{name} is out of range") from None


@router.get("", response_model=list[AuditEventView], responses=errors(401, 403, 404, 422),
            summary="Who submitted, approved, denied and retried requests, and their outcomes, oldest first "
                    "(scope read:<connector>)")
def audit(caller: Caller,
          connector: Annotated[str | None, Query(pattern=CONNECTOR_PATTERN,
                                                 description="Only this connector's requests."), ConnectorKey] = None,
          since: Annotated[datetime | None, Query(description="From this time (inclusive), ISO 8601.")] = None,
          until: Annotated[datetime | None, Query(description="Before this time, ISO 8601.")] = None,
          limit: Annotated[int, Query(ge=1, le=10000, description="At most this many events, oldest first.")] = 1000,
          ) -> list[dict[str, Any]]:
    after, before = _utc("since", since), _utc("until", until)
    scope: str | list[str] | None
    if connector is not None:
        require(caller, Verb.READ, connector)
        if connector not in known_connectors():
            raise not_found(f"connector {connector!r} is neither configured nor named by any request")
        scope = connector
    else:
        scope = readable_connectors(caller)
    found = events(runtime.engine(), connector=scope, since=after, until=before, limit=limit)
    return [event.as_dict() for event in found]
