"""``/v1/requests/{id}/approve`` and ``/deny``: the decisions on a request that waits for approvers.

Who decides is the token (``token:<name>``), with scope ``approve:<connector>``; the requester cannot approve
their own request, and a principal decides a request once (``provisioning.approvals``). The approval that
brings the count to what the policy asks sends the request to the workers (``jumpsync.api.approve_request``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from auth.scopes import Verb
from httpapi.errors import ApiError, invalid, not_found
from httpapi.principals import Caller, require
from httpapi.routes.requests import RequestId
from httpapi.schemas import DecisionBody, RequestDetail, errors
from jumpsync.api import approve_request, deny_request
from provisioning import approvals
from worker import runtime

router = APIRouter(prefix="/v1/requests", tags=["approvals"])


def _decide(decide: Callable[..., dict[str, Any]], request_id: str, caller: Caller,
            body: DecisionBody | None) -> dict[str, Any]:
    request = approvals.detail(runtime.engine(), request_id)
    if request is None:
        raise not_found(f"no provisioning request {request_id!r}")
    require(caller, Verb.APPROVE, request["connector"])
    try:
        decide(request_id, caller.requester, body.comment if body else None)
    except approvals.UnknownRequest as exc:
        raise not_found(str(exc)) from None
    except approvals.SelfApproval as exc:
        raise ApiError(403, "self_approval", str(exc)) from None
    except (approvals.NotAwaitingApproval, approvals.DuplicateDecision) as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except approvals.ApprovalError as exc:
        raise invalid(str(exc)) from None
    decided = approvals.detail(runtime.engine(), request_id)
    assert decided is not None  # requests are never deleted
    return decided


@router.post("/{request_id}/approve", response_model=RequestDetail, response_model_exclude_unset=True,
             responses=errors(400, 401, 403, 404, 409, 422),
             summary="Approve a request that awaits approval (scope approve:<connector>; not its requester)")
def approve(request_id: RequestId, caller: Caller, body: DecisionBody | None = None) -> dict[str, Any]:
    """The request with its decisions; ``pending`` (and sent to the workers) once enough approvers agreed."""
    return _decide(approve_request, request_id, caller, body)


@router.post("/{request_id}/deny", response_model=RequestDetail, response_model_exclude_unset=True,
             responses=errors(400, 401, 403, 404, 409, 422),
             summary="Deny a request that awaits approval (scope approve:<connector>): it is never applied")
def deny(request_id: RequestId, caller: Caller, body: DecisionBody | None = None) -> dict[str, Any]:
    return _decide(deny_request, request_id, caller, body)

