"""Directory Insights (`POST /insights/directory/v1/events`): an org's events, paged as the DI spec says.

Body: `service` (required, a list: `directory` or `all`), `start_time` (required, RFC 3339, not in the future),
`end_time` (optional, after `start_time`), `limit` (default 1000, at most 10000; anything else: 1000), `sort`
(`ASC` default, `DESC`), `search_after` (the previous page's `X-Search_after`). The answer is a bare array with
`X-Result-Count`, `X-Limit`, `X-Sort`, `X-Search_after` (on every page) and `X-Request-Id`; the last page is the
one with fewer results than the limit. Errors are 400 with `{"message": ...}`.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator import insights
from simulator.responses import ApiError, json_body, tenant_of

EVENTS_PATH = "/insights/directory/v1/events"
SERVICES = ("all", "directory", "alerts", "ldap", "mdm", "notifications", "object_storage", "password_manager",
            "radius", "reports", "saas_app_management", "software", "sso", "systems", "access_management",
            "asset_management")


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


async def events(request: Request) -> Response:
    body = await json_body(request)
    service = body.get("service")
    if not isinstance(service, list) or not service or not all(isinstance(s, str) for s in service):
        raise _bad(f"service is required: a list of {', '.join(SERVICES)}")
    unknown = [s for s in service if s not in SERVICES]
    if unknown:
        raise _bad(f"unknown service {unknown[0]!r}; valid: {', '.join(SERVICES)}")
    try:
        start = insights.parse_time(body.get("start_time"), "start_time")
        end = insights.parse_time(body["end_time"], "end_time") if body.get("end_time") is not None else None
        search_after = insights.parse_search_after(body.get("search_after"))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    now = datetime.fromtimestamp(time.time(), UTC)
    if start > now:
        raise _bad("start_time must not be in the future")
    if end is not None and end <= start:
        raise _bad(f"Start Time not after End Time {body['start_time']} > {body['end_time']}")
    limit = body.get("limit", insights.DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= insights.MAX_LIMIT:
        limit = insights.DEFAULT_LIMIT  # "nonsensical values" fall back to the default, as the spec says
    sort = str(body.get("sort") or "ASC").upper()
    sort = sort if sort in ("ASC", "DESC") else "ASC"
    wanted = {"all", insights.SERVICE} & set(service)
    rows, token = (tenant_of(request).insights.query(start, end, limit, sort == "DESC", search_after)
                   if wanted else ([], None))
    return JSONResponse(rows, headers={
        "X-Result-Count": str(len(rows)), "X-Limit": str(limit), "X-Sort": sort,
        "X-Search_after": insights.token_header(token, search_after), "X-Request-Id": str(uuid.uuid4())})


ROUTES = [Route(EVENTS_PATH, events, methods=["POST"])]
