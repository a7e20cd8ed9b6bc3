"""The Starlette application of the simulator.

Every `/api` request passes one gate (a pure ASGI middleware, cheaper than BaseHTTPMiddleware), in this order:
count it as in flight, sleep the configured latency, apply fault rules, the rate limit and the random error
rate, check `x-api-key`, resolve the org from `x-org-id`; then the route runs. Stats are recorded per route
template (`GET /api/systemusers/{id}`), also for requests a fault or the auth check answered.

Org rules (jumpcloud-api.md): multi-tenant mode needs `x-org-id` (401 missing, 400 malformed, 404 unknown);
single-tenant mode accepts it only when it names the one org (403 otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator import routes_sim, routes_v1, routes_v2
from simulator.faults import FaultDecision
from simulator.model import Conflict, Missing, is_object_id
from simulator.query import QueryError
from simulator.responses import ApiError, error_response
from simulator.state import SimulatorState

UNAUTHORIZED = {"error": "Unauthorized"}


def create_app(state: SimulatorState) -> Starlette:
    app = Starlette(
        routes=[*routes_v1.ROUTES, *routes_v2.ROUTES, *routes_sim.ROUTES],
        exception_handlers={
            ApiError: _api_error,
            QueryError: _status_handler(400),
            Conflict: _status_handler(409),
            Missing: _status_handler(404),
            HTTPException: _http_exception,
        },
    )
    app.state.simulator = state
    app.add_middleware(Gate, state=state, routes=app.router.routes)
    return app


class Gate:
    """Faults, auth, org resolution and stats for /api; the loopback check for /_sim."""

    def __init__(self, app: ASGIApp, state: SimulatorState, routes: list[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_sim"):
            if self.state.sim_loopback_only and not _is_loopback(scope.get("client")):
                await error_response(403, "Forbidden: /_sim answers loopback clients only")(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        await self._api(scope, receive, send)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats, faults = self.state.stats, self.state.faults
        method: str = scope["method"]
        route = f"{method} {self._template(scope)}"
        status = 500
        stats.started()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            delay = faults.delay_seconds()
            if delay:
                await asyncio.sleep(delay)
            decision = faults.decide(method, scope["path"])
            if decision is not None:
                stats.by_fault[decision.reason] += 1
                await _fault_response(decision)(scope, receive, send_recording)
                return
            refusal = self._authorize(scope)
            if refusal is not None:
                await refusal(scope, receive, send_recording)
                return
            await self.app(scope, receive, send_recording)
        finally:
            stats.finished(route, status)

    def _template(self, scope: Scope) -> str:
        """The route template a request matches (method aside), for stats keyed by endpoint, not raw path."""
        fallback = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", scope["path"])
            if match is Match.PARTIAL and fallback is None:
                fallback = getattr(route, "path", None)
        return fallback or "(unmatched)"

    def _authorize(self, scope: Scope) -> Response | None:
        """None when the key and org are good (the org's Tenant is put in the scope), else the refusal."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self.state.api_key.encode()):
            return error_response(401, "Unauthorized: api key user not found", **UNAUTHORIZED)
        org = headers.get("x-org-id", "").strip()
        if self.state.multi_tenant:
            if not org:
                return error_response(401, "Unauthorized: x-org-id is required for a multi-tenant administrator",
                                      **UNAUTHORIZED)
            if not is_object_id(org):
                return error_response(400, "Bad Request: x-org-id is not a valid organization id")
            tenant = self.state.orgs.get(org.lower())
            if tenant is None:
                return error_response(404, "Not Found: organization not found")
        else:
            tenant = self.state.single_org
            if org and org.lower() != tenant.org_id:
                return error_response(403, "Forbidden: x-org-id is not supported for this administrator")
        scope["jumpcloud.tenant"] = tenant
        return None


def _fault_response(decision: FaultDecision) -> Response:
    """What an injected failure looks like. 502/503/504 come from a load balancer on the real service, so their
    bodies are HTML, not JSON: a client must not assume an error body parses."""
    headers = {"Retry-After": decision.retry_after} if decision.retry_after is not None else {}
    if decision.status in (502, 503, 504):
        html = f"<html><head><title>{decision.status} {decision.message}</title></head><body>" \
               f"<center><h1>{decision.status} {decision.message}</h1></center></body></html>"
        return HTMLResponse(html, status_code=decision.status, headers=headers)
    return error_response(decision.status, decision.message, headers)


def _is_loopback(client: Any) -> bool:
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return client[0] in ("localhost", "testclient")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers, **exc.extra)


def _status_handler(status: int):  # type: ignore[no-untyped-def]
    async def handler(request: Request, exc: Exception) -> Response:
        return error_response(status, str(exc))

    return handler


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)
