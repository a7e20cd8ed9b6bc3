"""The Starlette application of the simulator.

Every `/api` and `/insights` (Directory Insights) request passes one gate (a pure ASGI middleware, cheaper than
BaseHTTPMiddleware), in this order: count it as in flight, sleep the configured latency, pick the fault rule and
apply the rate limit and the random error rate (`Faults.plan`), sleep the rule's delay, answer with the rule's
status or revoke the key / remove the org when the rule says so, check `x-api-key`, resolve the org from `x-org-id`, apply the rule's mutation; then
the route runs, its answer damaged as the rule says (`drop`, `truncate`, `malformed`, `total_delta`). Stats are
recorded per route template (`GET /api/systemusers/{id}`), also for requests a fault or the auth check answered;
every injected fault is counted in `by_fault` and logged in the event log.

Org rules (jumpcloud-api.md): multi-tenant mode needs `x-org-id` (401 missing, 400 malformed, 404 unknown);
single-tenant mode accepts it only when it names the one org (403 otherwise). One exception: `GET
/api/organizations` in multi-tenant mode needs only the key, and ignores `x-org-id` (an MSP admin lists its
orgs without naming one; the listing is the same whichever org a header names).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jumpcloud.ids import is_object_id
from simulator import inject, mutate, routes_insights, routes_search, routes_sim, routes_v1, routes_v2
from simulator.faults import UNAUTHORIZED_MESSAGE, FaultDecision, FaultRule
from simulator.model import Conflict, Missing
from simulator.query import QueryError
from simulator.responses import ApiError, error_response
from simulator.state import SimulatorState

UNAUTHORIZED = {"error": "Unauthorized"}
ORG_NOT_FOUND = "Not Found: organization not found"
CLIENT_GONE = 499  # recorded in stats when the client left during a delay (nginx's "client closed request")


def create_app(state: SimulatorState) -> Starlette:
    app = Starlette(
        routes=[*routes_v1.ROUTES, *routes_search.ROUTES, *routes_v2.ROUTES, *routes_insights.ROUTES, *routes_sim.ROUTES],
        exception_handlers={
            ApiError: _api_error,
            QueryError: _query_error,
            Conflict: _status_handler(409),
            Missing: _status_handler(404),
            HTTPException: _http_exception,
        },
    )
    app.state.simulator = state
    app.router.redirect_slashes = False  # the gate answers `/api/...x/` as `/api/...x` (`_without_trailing_slash`)
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
        if not (path == "/api" or path.startswith(("/api/", "/insights/"))):
            await self.app(scope, receive, send)
            return
        await self._api(_without_trailing_slash(scope), receive, send)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, stats, faults = self.state, self.state.stats, self.state.faults
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        route = f"{method} {self._template(scope)}"
        status = 500
        answered = False
        stats.started()

        async def send_recording(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                stats.answered(route, status)
            await send(message)

        try:
            delay = faults.delay_seconds()
            if delay:
                await asyncio.sleep(delay)
            plan = faults.plan(method, path, query)
            rule = plan.rule
            if rule is not None and rule.delay_ms and rule.action != "drip":  # drip spends it between bytes
                state.fault("delay", method, path, delay_ms=rule.delay_ms)
                gone, receive = await inject.sleep_unless_gone(rule.delay_ms / 1000.0, receive)
                if gone:
                    status = CLIENT_GONE
                    return
            decision = plan.decision
            if decision is not None:
                state.fault(decision.reason, method, path, status=decision.status)
                await _fault_response(decision)(scope, receive, send_recording)
                return
            if rule is not None:
                self._revoke(rule, scope)
            app = self._answering_app(scope, rule, query)
            if rule is None or (rule.action is None and rule.total_delta is None):
                await app(scope, receive, send_recording)
                return
            await self._damaged(rule, app, scope, receive, send_recording)
        finally:
            if not answered:  # no response sent: an error, or the client went away first
                stats.answered(route, status)
            stats.finished()

    def _answering_app(self, scope: Scope, rule: FaultRule | None, query: str) -> ASGIApp:
        """The refusal when the key or the org is refused; else the routes, after the rule's mutation if it has
        one."""
        refusal = self._authorize(scope)
        if refusal is not None:
            return refusal
        if rule is not None and rule.mutate:
            self._mutate(scope, rule.mutate, rule.path, query)
        return self.app

    def _mutate(self, scope: Scope, spec: dict[str, Any], rule: str, query: str) -> None:
        """A rule's `mutate` (``simulator.mutate``) on the request's org."""
        method, path, state = scope["method"], scope["path"], self.state
        tenant = scope.get("jumpcloud.tenant")
        if tenant is None:  # the org listing of a multi-tenant key: no org to change
            state.events.add("mutate_skipped", reason="no org (the request names none)", rule=rule,
                             request=f"{method} {path}" + (f"?{query}" if query else ""))
            return
        changes = mutate.apply(tenant, spec, method, path, query, state.events, rule)
        state.fault("mutate", method, path, changes=len(changes))

    async def _damaged(self, rule: FaultRule, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """The route's answer, changed as the rule says."""
        method, path = scope["method"], scope["path"]
        status, headers, body = await inject.capture(app, scope, receive)
        if rule.total_delta is not None:
            headers, body, total = inject.shift_total(headers, body, rule.total_delta)
            if total is not None:
                self.state.fault("total_delta", method, path, delta=rule.total_delta, total=total)
        if rule.action == "drop":
            self.state.fault("drop", method, path, sent=len(body) // 2, of=len(body))
            await inject.drop(send, status, headers, body)
        elif rule.action == "truncate":
            self.state.fault("truncate", method, path, sent=len(body) // 2, of=len(body))
            await inject.answer(send, status, headers, body[: len(body) // 2])
        elif rule.action == "drip":
            self.state.fault("drip", method, path, bytes=len(body))
            await inject.drip(send, receive, status, headers, body, (rule.delay_ms or 1000) / 1000)
        elif rule.action == "malformed":
            self.state.fault("malformed", method, path)
            if rule.content_type is not None:
                headers = inject.set_header(headers, "content-type", rule.content_type)
            text = inject.DEFAULT_MALFORMED_BODY if rule.body is None else rule.body
            await inject.answer(send, status, headers, text.encode())
        else:
            await inject.answer(send, status, headers, body)

    def _revoke(self, rule: FaultRule, scope: Scope) -> None:
        """A rule's `revoke_key` / `remove_org`: from this request on, the key / the org is gone."""
        if rule.revoke_key:
            self.state.replace_key(None, by=f"rule {rule.path}")
        if rule.remove_org:
            org = _headers(scope).get("x-org-id", "").strip()
            if not org and not self.state.multi_tenant:
                org = self.state.single_org.org_id
            if org in self.state.orgs:
                self.state.remove_org(org, by=f"rule {rule.path}")

    def _template(self, scope: Scope) -> str:
        """The route template a request matches (method aside), for stats keyed by endpoint, not raw path."""
        fallback: str | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", scope["path"]))
            if match is Match.PARTIAL and fallback is None:
                fallback = getattr(route, "path", None)
        return fallback or "(unmatched)"

    def _authorize(self, scope: Scope) -> Response | None:
        """None when the key and org are good (the org's Tenant is put in the scope; none for the org listing
        of a multi-tenant key), else the refusal."""
        headers = _headers(scope)
        key = headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self.state.api_key.encode()):
            if self.state.is_revoked(key):
                self.state.fault("revoked_key", scope["method"], scope["path"], status=401)
            return error_response(401, UNAUTHORIZED_MESSAGE, None, **UNAUTHORIZED)
        org = headers.get("x-org-id", "").strip()
        if self.state.multi_tenant and scope["path"] == routes_v1.ORGANIZATIONS_PATH:
            return None  # the org listing names no org: no tenant in the scope, `x-org-id` ignored
        if self.state.multi_tenant:
            if not org:
                return error_response(401, "Unauthorized: x-org-id is required for a multi-tenant administrator",
                                      None, **UNAUTHORIZED)
            if not is_object_id(org):
                return error_response(400, "Bad Request: x-org-id is not a valid organization id")
            tenant = self.state.orgs.get(org)
            if tenant is None:
                return error_response(404, ORG_NOT_FOUND)
        else:
            tenant = self.state.single_org
            if org and org != tenant.org_id:
                return error_response(403, "Forbidden: x-org-id is not supported for this administrator")
        if tenant.org_id in self.state.removed_orgs:
            self.state.fault("removed_org", scope["method"], scope["path"], status=404, org=tenant.org_id)
            return error_response(404, ORG_NOT_FOUND)
        scope["jumpcloud.tenant"] = tenant
        return None


def _without_trailing_slash(scope: Scope) -> Scope:
    """The request with its path's trailing slashes removed: JumpCloud answers `/api/v2/usergroups/` as
    `/api/v2/usergroups`, where a router would redirect (307 with an empty body, which clients that do not follow
    redirects take for the answer). Both spellings route, count and match fault rules as one."""
    path: str = scope["path"]
    if not path.endswith("/"):
        return scope
    trimmed = path.rstrip("/") or "/"
    raw = scope.get("raw_path")
    return {**scope, "path": trimmed, "raw_path": raw.rstrip(b"/") or b"/" if raw is not None else raw}


def _fault_response(decision: FaultDecision) -> Response:
    """What an injected failure looks like. 502/503/504 come from a load balancer on the real service, so their
    bodies are HTML, not JSON: a client must not assume an error body parses."""
    headers = {"Retry-After": decision.retry_after} if decision.retry_after is not None else {}
    if decision.status in (502, 503, 504):
        html = f"<html><head><title>{decision.status} {decision.message}</title></head><body>" \
               f"<center><h1>{decision.status} {decision.message}</h1></center></body></html>"
        return HTMLResponse(html, status_code=decision.status, headers=headers)
    extra = {"error": decision.error} if decision.error is not None else {}
    return error_response(decision.status, decision.message, headers, **extra)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


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


def _status_handler(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        return error_response(status, str(exc))

    return handler


async def _query_error(request: Request, exc: Exception) -> Response:
    """A refused query parameter: 400 with the `Bad Request:` prefix every other 400 message carries."""
    return error_response(400, f"Bad Request: {exc}")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)
