"""``/v1/requests``: submit a provisioning request, read one, list them, retry a failed one.

Submitting goes through the same core as ``jumpsync provision`` and ``jumpsync.api.submit_request``
(``provisioning.requests.accept``, then the enqueue): an idempotency key given to either finds the same request.
``requested_by`` is the token (``token:<name>``), never the body.

What can be refused up front is refused before anything is written (422, 404): a body that does not validate,
an unknown connector, parameters the action does not take. What the connector's policy refuses is recorded as a
``rejected`` request, as for every other entry point, and answered 422 with the request.

A request that matches the connector's approval rules is recorded ``awaiting_approval`` and sent to the workers
only once approved (``httpapi/routes/approvals.py``); ``GET /v1/requests/{id}`` shows its decisions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from auth.scopes import Principal, Verb
from config.settings import ConfigError
from httpapi.errors import ApiError, invalid, not_found
from httpapi.principals import Caller, forbidden, require
from httpapi.schemas import CONNECTOR_PATTERN, Action, ConnectorKey, RequestDetail, RequestView, SubmitRequest, errors
from jumpsync.api import enqueue, submit_as
from models.states import RequestStatus
from provisioning import approvals
from provisioning import requests as prequests
from provisioning.params import InvalidRequest
from worker import runtime

router = APIRouter(prefix="/v1/requests", tags=["requests"])

RequestId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The request's id.")]


def _check_submittable(body: SubmitRequest) -> None:
    """A usage error is answered before anything is written: an unknown connector, parameters that do not fit."""
    try:
        prequests.check_submission(runtime.settings(), body.connector, body.action, body.params)
    except ConfigError:
        raise not_found(f"connector {body.connector!r} is not configured") from None
    except InvalidRequest as exc:
        raise invalid(str(exc)) from None


@router.post("", status_code=202, response_model=RequestView, responses=errors(400, 401, 403, 404, 422),
             summary="Submit a provisioning request (scope provision:<connector>:<action>)")
def submit(body: SubmitRequest, caller: Caller) -> dict[str, Any]:
    """Recorded, then sent to the workers; 202 with the request as recorded (``pending``, or the first request
    of a repeated idempotency key, whatever its status now). Poll ``GET /v1/requests/{id}`` for the outcome."""
    require(caller, Verb.PROVISION, body.connector, body.action)
    _check_submittable(body)
    request = submit_as(caller.requester, body.connector, body.action, dict(body.params),
                        idempotency_key=body.idempotency_key, on_behalf_of=body.on_behalf_of, dry_run=body.dry_run)
    if request["status"] == RequestStatus.REJECTED:
        raise ApiError(422, "rejected", request["last_error"] or "the request was rejected", request=request)
    return request


def _readable(caller: Principal, request: dict[str, Any]) -> bool:
    """A token reads a connector's requests with ``read:<connector>``, and the requests it submitted itself."""
    return caller.may(Verb.READ, request["connector"]) or request["requested_by"] == caller.requester


def _get(caller: Principal, request_id: str) -> dict[str, Any]:
    request = approvals.detail(runtime.engine(), request_id)
    if request is None:
        raise not_found(f"no provisioning request {request_id!r}")
    if not _readable(caller, request):
        raise forbidden(f"read:{request['connector']}")
    return request


@router.get("/{request_id}", response_model=RequestDetail, response_model_exclude_unset=True,
            responses=errors(401, 403, 404, 422),
            summary="One request (scope read:<connector>, or the token that submitted it)")
def show(request_id: RequestId, caller: Caller) -> dict[str, Any]:
    return _get(caller, request_id)


def known_connectors() -> set[str]:
    """Every connector a filter may name: configured, or named by a recorded request (as the CLI's)."""
    return {c.name for c in runtime.settings().connectors} | set(prequests.connector_names(runtime.engine()))


def readable_connectors(caller: Principal) -> list[str] | None:
    """The connectors whose requests ``caller`` may list; None for every connector (``read:*``)."""
    if caller.may(Verb.READ, "*"):
        return None
    return sorted(c for c in known_connectors() if caller.may(Verb.READ, c))


@router.get("", response_model=list[RequestView], responses=errors(401, 403, 404, 422),
            summary="Requests, newest first, of the connectors the token may read (as `jumpsync requests`)")
def listing(caller: Caller,
            status: Annotated[RequestStatus | None, Query(description="Only requests in this state.")] = None,
            connector: Annotated[str | None, Query(pattern=CONNECTOR_PATTERN,
                                                   description="Only this connector's requests."), ConnectorKey] = None,
            action: Annotated[Action | None, Query(description="Only requests for this action.")] = None,
            limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 50,
            ) -> list[dict[str, Any]]:
    engine = runtime.engine()
    if connector is not None:
        require(caller, Verb.READ, connector)
        if connector not in known_connectors():
            raise not_found(f"connector {connector!r} is neither configured nor named by any request")
        return prequests.listing(engine, status=status, connector=connector, action=action, limit=limit)
    readable = readable_connectors(caller)
    if readable is None:
        return prequests.listing(engine, status=status, action=action, limit=limit)
    found = [r for name in readable
             for r in prequests.listing(engine, status=status, connector=name, action=action, limit=limit)]
    return sorted(found, key=lambda r: r["created_at"] or "", reverse=True)[:limit]


@router.post("/{request_id}/retry", status_code=202, response_model=RequestView,
             responses=errors(401, 403, 404, 409, 422),
             summary="Put a failed request back to pending and send it (scope provision:<connector>:<action>)")
def retry(request_id: RequestId, caller: Caller) -> dict[str, Any]:
    request = prequests.get(runtime.engine(), request_id)
    if request is None:
        raise not_found(f"no provisioning request {request_id!r}")
    require(caller, Verb.PROVISION, request["connector"], request["action"])
    try:
        retried = prequests.retry(runtime.engine(), request_id, caller.requester)
    except LookupError as exc:
        raise not_found(str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    enqueue(retried["id"])  # an unreachable broker leaves it pending: the relay sends it
    return retried
