"""Shared helpers of the route modules: JumpCloud-style errors, request bodies, list envelopes.

Error bodies follow the specs' `Error` definition (`code`, `message`, `status`); `message` is the one field a
client can rely on, as on real JumpCloud.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator.model import Tenant, connection
from simulator.query import ListQuery, page, project, select


class ApiError(Exception):
    """Raised by handlers; rendered as a JSON error with the given status."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"code": status, "message": message, "status": phrase, **extra}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=dict(headers or {}))


def tenant_of(request: Request) -> Tenant:
    """The org the gate resolved from the API key and `x-org-id`."""
    return request.scope["jumpcloud.tenant"]


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Bad Request: the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request: the request body must be a JSON object")
    return body


def selected(tenant: Tenant, key: Any, records: Callable[[], Sequence[Mapping[str, Any]]], query: ListQuery
             ) -> Sequence[Mapping[str, Any]]:
    """Filtered and sorted records, cached per (listing, sort, filters) until the tenant next changes."""
    if not query.filters and not query.sort:
        return records()
    return tenant.cached(("select", key, query.selection_key), lambda: select(records(), query))


def v1_list(records: Sequence[Mapping[str, Any]], query: ListQuery) -> Response:
    """The v1 envelope: `totalCount` is the full total, on every page, also an empty one."""
    results = [project(r, query.fields) for r in page(records, query)]
    return JSONResponse({"totalCount": len(records), "results": results})


def v2_list(records: Sequence[Mapping[str, Any]], query: ListQuery, keep: Sequence[str] = ("id",)) -> Response:
    """A v2 listing: a bare array, the total in `x-total-count` on every page."""
    results = [project(r, query.fields, keep) for r in page(records, query)]
    return JSONResponse(results, headers={"x-total-count": str(len(records))})


def v2_connections(ids: Sequence[str], kind: str, query: ListQuery) -> Response:
    """Graph connections (group members, app associations): built only for the page asked for."""
    return JSONResponse([connection(kind, i) for i in page(ids, query)], headers={"x-total-count": str(len(ids))})


def v2_typed_connections(edges: Sequence[tuple[str, str]], query: ListQuery) -> Response:
    """Graph connections of several kinds (`targets=user,user_group`): (kind, id) pairs, in the order given."""
    return JSONResponse([connection(kind, i) for kind, i in page(edges, query)],
                        headers={"x-total-count": str(len(edges))})
