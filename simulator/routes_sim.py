"""Control endpoints under `/_sim` (no API key; loopback clients only): counters, fault knobs, tenant dumps, and
the few writes the real API cannot make (administrators and applications are created in the console).

    GET  /_sim/stats                 {"requests", "by_status", "by_route", "by_fault", "in_flight", "max_in_flight",
                                      "max_per_second"}
    POST /_sim/stats/reset           the zeroed stats
    GET  /_sim/faults                the fault config (see simulator.faults)
    PUT  /_sim/faults                merge a partial config, answer the new one (400 if invalid)
    DELETE /_sim/faults              back to no faults
    GET  /_sim/events?since=SEQ&kind=K  {"events": [{"seq", "time", "kind", ...}], "last": SEQ}: injected faults
                                     (kind "fault"), records added/removed by rules, key and org changes
    DELETE /_sim/events              forget the logged events (seq keeps counting)
    PUT  /_sim/api-key               {"api_key": "new"}: the old key is revoked (401, counted), the new one works;
                                     {"api_key": null}: revoke without a working replacement. Never echoes a key.
    GET  /_sim/orgs                  {"multi_tenant": bool, "orgs": [org ids], "removed": [org ids],
                                     "names": {org id: display name}}
    POST /_sim/orgs                  multi-tenant only: generate an org from {"seed", "users", "admins", "groups",
                                     "apps", "display_name", "org_id"} (all optional) -> 201 {"org_id",
                                     "display_name"}; 400 single-tenant or a bad field, 409 the org id exists
    PATCH /_sim/orgs/{org_id}        {"display_name": "New name"}: rename -> {"org_id", "display_name"}; 404 unknown
    DELETE /_sim/orgs/{org_id}       the org disappears: requests naming it (or, single-tenant, any) answer 404
    POST /_sim/orgs/{org_id}/restore it is back
    GET  /_sim/tenant?org=ID         {"org_id", "roles", "users", "admins", "groups" (+"members"), "apps" (+"users", "groups")}
    POST /_sim/admins?org=ID         create an admin: {"email", "firstname", "lastname", "roleName", ...} -> 201 record
    DELETE /_sim/admins/{id}?org=ID  200 with the deleted record
    POST /_sim/applications?org=ID   create an app: {"name", "displayName", "displayLabel", "ssoUrl", ...} -> 201
    DELETE /_sim/applications/{id}?org=ID
    POST /_sim/roles?org=ID          add a custom role: {"name"} -> 201 {"id", "name"}

`org` may be left out when the simulator holds a single org.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jumpcloud.ids import is_object_id
from simulator.generator import TenantSpec, generate_tenant, make_app, multi_tenant_spec
from simulator.insights import InsightsFaults
from simulator.model import Conflict, Missing, Tenant, iso_time
from simulator.responses import ApiError, json_body
from simulator.routes_v1 import admin_changes
from simulator.state import SimulatorState


def _state(request: Request) -> SimulatorState:
    return request.app.state.simulator


def _tenant(request: Request) -> Tenant:
    state = _state(request)
    org = request.query_params.get("org")
    if org is None:
        if len(state.orgs) != 1:
            raise ApiError(400, "org is required when the simulator holds several orgs")
        return state.single_org
    tenant = state.orgs.get(org)
    if tenant is None:
        raise ApiError(404, f"unknown org {org}")
    return tenant


async def get_stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats.to_dict())


async def reset_stats(request: Request) -> Response:
    stats = _state(request).stats
    stats.reset()
    return JSONResponse(stats.to_dict())


async def get_faults(request: Request) -> Response:
    return JSONResponse(_state(request).faults.to_dict())


async def put_faults(request: Request) -> Response:
    faults = _state(request).faults
    try:
        faults.update(await json_body(request))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse(faults.to_dict())


async def reset_faults(request: Request) -> Response:
    faults = _state(request).faults
    faults.update({"latency_ms": 0, "latency_jitter_ms": 0, "error_rate": 0, "rate_limit": None, "rules": [],
                   "insights": InsightsFaults().to_dict()})
    return JSONResponse(faults.to_dict())


async def get_events(request: Request) -> Response:
    events = _state(request).events
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        raise ApiError(400, "since must be an integer") from None
    return JSONResponse({"events": events.since(since, request.query_params.get("kind")), "last": events.last})


async def clear_events(request: Request) -> Response:
    events = _state(request).events
    events.clear()
    return JSONResponse({"events": [], "last": events.last})


async def put_api_key(request: Request) -> Response:
    state = _state(request)
    body = await json_body(request)
    if "api_key" not in body:
        raise ApiError(400, 'send {"api_key": "new key"} or {"api_key": null}')
    key = body["api_key"]
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ApiError(400, "api_key must be a non-empty string or null")
    state.replace_key(None if key is None else key.strip(), by="api")
    return JSONResponse({"revoked_keys": len(state.revoked_keys), "replaced": key is not None})


async def get_orgs(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({"multi_tenant": state.multi_tenant, "orgs": list(state.orgs),
                         "removed": sorted(state.removed_orgs),
                         "names": {org_id: t.display_name for org_id, t in state.orgs.items()}})


#: What `POST /_sim/orgs` generates when the body leaves a count out: a small org, quick to build and sync.
NEW_ORG_DEFAULTS = {"users": 20, "admins": 3, "groups": 4, "apps": 2}
#: The most records of one kind `POST /_sim/orgs` builds: generation runs on the server's event loop.
NEW_ORG_MAX = 100_000
_NEW_ORG_FIELDS = ("seed", *NEW_ORG_DEFAULTS, "display_name", "org_id")


async def add_org(request: Request) -> Response:
    """Generate an org as `simulator.cli.build_state` generates the orgs of a multi-tenant simulator (the same
    TenantSpec defaults and multi-tenant tweaks) and add it. `seed` defaults to one past the highest seed held."""
    state = _state(request)
    if not state.multi_tenant:
        raise ApiError(400, "orgs can be added in multi-tenant mode only (start the simulator with several orgs "
                            "or --multi-tenant)")
    body = await json_body(request)
    unknown = sorted(set(body) - set(_NEW_ORG_FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}: send {', '.join(_NEW_ORG_FIELDS)}")
    seed = body.get("seed", max(t.seed for t in state.orgs.values()) + 1)
    if not _is_int(seed):
        raise ApiError(400, "seed must be an integer")
    counts = {}
    for name, default in NEW_ORG_DEFAULTS.items():
        value = body.get(name, default)
        if not _is_int(value) or not 0 <= value <= NEW_ORG_MAX:
            raise ApiError(400, f"{name} must be an integer from 0 to {NEW_ORG_MAX}")
        counts[name] = value
    display_name = body.get("display_name")
    if display_name is not None:
        display_name = _display_name(display_name)
    org_id = body.get("org_id")
    if org_id is not None:
        if not isinstance(org_id, str) or not is_object_id(org_id.lower()):  # the control API folds case
            raise ApiError(400, "org_id must be 24 hex digits")
        org_id = org_id.lower()
        if org_id in state.orgs:
            raise ApiError(409, f"org {org_id} exists")
    tenant = generate_tenant(multi_tenant_spec(TenantSpec(seed=seed, org_id=org_id, display_name=display_name,
                                                          **counts)))
    try:
        state.add_org(tenant, by="api")
    except Conflict as exc:
        raise ApiError(409, f"{exc} (seed {seed} gives it: send another seed or an org_id)") from None
    return JSONResponse({"org_id": tenant.org_id, "display_name": tenant.display_name}, status_code=201)


async def rename_org(request: Request) -> Response:
    body = await json_body(request)
    if "display_name" not in body:
        raise ApiError(400, 'display_name is required: send {"display_name": "New name"}')
    unknown = sorted(set(body) - {"display_name"})
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}: send display_name only")
    name = _display_name(body["display_name"])
    try:
        tenant = _state(request).rename_org(request.path_params["org_id"], name, by="api")
    except Missing:
        raise ApiError(404, "unknown org") from None
    return JSONResponse({"org_id": tenant.org_id, "display_name": tenant.display_name})


def _display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "display_name must be a non-empty string")
    return value.strip()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def remove_org(request: Request) -> Response:
    state = _state(request)
    try:
        state.remove_org(request.path_params["org_id"], by="api")
    except KeyError:
        raise ApiError(404, "unknown org") from None
    return await get_orgs(request)


async def restore_org(request: Request) -> Response:
    state = _state(request)
    try:
        state.restore_org(request.path_params["org_id"])
    except KeyError:
        raise ApiError(404, "unknown org") from None
    return await get_orgs(request)


async def get_tenant(request: Request) -> Response:
    return JSONResponse(_tenant(request).dump())


async def create_admin(request: Request) -> Response:
    tenant = _tenant(request)
    body = await json_body(request)
    if not isinstance(body.get("email"), str) or "@" not in body["email"]:
        raise ApiError(400, "email is required")
    fields = admin_changes(tenant, {"roleName": "Administrator", **body})
    now = time.time()
    aid = tenant.new_id()
    record: dict[str, Any] = {
        "_id": aid, "email": "", "firstname": "", "lastname": "", "roleName": "", "roleNames": [], "role": "",
        "suspended": False, "enableMultiFactor": False, "totpEnrolled": False, "organization": tenant.org_id,
        "created": iso_time(now),
    }
    record.update(fields)
    for key in ("suspended", "totpEnrolled"):
        if isinstance(body.get(key), bool):
            record[key] = body[key]
    if isinstance(body.get("organization"), str):
        record["organization"] = body["organization"]
    tenant.add_admin(record)
    return JSONResponse(record, status_code=201)


async def delete_admin(request: Request) -> Response:
    return JSONResponse(_tenant(request).delete_admin(request.path_params["id"]))


async def create_application(request: Request) -> Response:
    tenant = _tenant(request)
    body = await json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "name is required")
    display = body.get("displayName") or name
    aid = tenant.new_id()
    record = make_app(aid, tenant.org_id, name, display, body.get("displayLabel") or display, time.time(),
                      active=body.get("active", True) is not False, sso_type=body.get("ssoType", "saml"))
    for key in ("ssoUrl", "description", "learnMore", "beta"):
        if key in body:
            record[key] = body[key]
    tenant.add_app(record)
    if "provision" in body:
        tenant.set_provisioning(aid, _provision(body["provision"]))
    return JSONResponse(record, status_code=201)


async def put_application_provision(request: Request) -> Response:
    """`{"provision": {"type": "scim", ...} | null}`: Identity Management turned on or off for the app."""
    tenant = _tenant(request)
    body = await json_body(request)
    if "provision" not in body:
        raise ApiError(400, "provision is required (an object, or null)")
    tenant.set_provisioning(request.path_params["id"], _provision(body["provision"]))  # Missing: 404
    return Response(status_code=204)


def _provision(value: Any) -> dict[str, Any] | None:
    if value is not None and (not isinstance(value, dict) or not isinstance(value.get("type"), str)):
        raise ApiError(400, 'provision must be null or an object with a "type", e.g. {"type": "scim"}')
    return value


async def delete_application(request: Request) -> Response:
    return JSONResponse(_tenant(request).delete_app(request.path_params["id"]))


async def create_role(request: Request) -> Response:
    tenant = _tenant(request)
    name = (await json_body(request)).get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name is required")
    if tenant.role_named(name):
        raise ApiError(409, "a role with this name exists")
    rid = tenant.new_id()
    tenant.roles[rid] = name
    return JSONResponse({"id": rid, "name": name}, status_code=201)


ROUTES = [
    Route("/_sim/stats", get_stats, methods=["GET"]),
    Route("/_sim/stats/reset", reset_stats, methods=["POST"]),
    Route("/_sim/faults", get_faults, methods=["GET"]),
    Route("/_sim/faults", put_faults, methods=["PUT"]),
    Route("/_sim/faults", reset_faults, methods=["DELETE"]),
    Route("/_sim/events", get_events, methods=["GET"]),
    Route("/_sim/events", clear_events, methods=["DELETE"]),
    Route("/_sim/api-key", put_api_key, methods=["PUT"]),
    Route("/_sim/orgs", get_orgs, methods=["GET"]),
    Route("/_sim/orgs", add_org, methods=["POST"]),
    Route("/_sim/orgs/{org_id}", rename_org, methods=["PATCH"]),
    Route("/_sim/orgs/{org_id}", remove_org, methods=["DELETE"]),
    Route("/_sim/orgs/{org_id}/restore", restore_org, methods=["POST"]),
    Route("/_sim/tenant", get_tenant, methods=["GET"]),
    Route("/_sim/admins", create_admin, methods=["POST"]),
    Route("/_sim/admins/{id}", delete_admin, methods=["DELETE"]),
    Route("/_sim/applications", create_application, methods=["POST"]),
    Route("/_sim/applications/{id}", delete_application, methods=["DELETE"]),
    Route("/_sim/applications/{id}/provision", put_application_provision, methods=["PUT"]),
    Route("/_sim/roles", create_role, methods=["POST"]),
]
