"""v1 endpoints (`/api/...`): system users, applications, administrators, organisations.

Writes keep JumpCloud's rules and status codes: create needs a unique email and username (400 / 409), suspend
and unsuspend send `suspended` and `state` together and in agreement (400 otherwise), only a STAGED user can be
activated (400 otherwise), delete answers 200 with the deleted record. Unknown body fields are ignored, as the
service does; known fields of the wrong type are refused with 400, except integer booleans (1/0), which JumpCloud
takes for true/false (a public client sends them to the real service). Suspension: `suspended` or `state` alone
is enough (the spec requires neither with the other); sent together they must agree (400 otherwise).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.model import iso_time
from simulator.query import V1, parse_list_query, project, select
from simulator.responses import ApiError, json_body, selected, tenant_of, v1_list

# Writable fields of a system user (SystemUserPost / SystemUserPut in the v1 spec), by JSON type.
_STRING_FIELDS = frozenset({
    "alternateEmail", "company", "costCenter", "department", "description", "displayname", "email",
    "employeeIdentifier", "employeeType", "external_dn", "external_password_expiration_date",
    "external_source_type", "firstname", "jobTitle", "lastname", "location", "managedAppleId", "manager",
    "middlename", "public_key", "username",
})
_BOOL_FIELDS = frozenset({
    "account_locked", "allow_public_key", "disableDeviceMaxLoginAttempts", "enable_managed_uid",
    "enable_user_portal_multifactor", "externally_managed", "ldap_binding_user", "password_never_expires",
    "passwordless_sudo", "samba_service_user", "sudo",
})
_LIST_FIELDS = frozenset({"addresses", "attributes", "phoneNumbers", "relationships", "restrictedFields", "ssh_keys"})
_OBJECT_FIELDS = frozenset({"mfa", "delegatedAuthority", "recoveryEmail"})
_INT_FIELDS = frozenset({"unix_guid", "unix_uid"})
_CREATE_STATES = ("STAGED", "ACTIVATED")

# Fields an administrator record may change through PUT /api/users/{id} (UserPut in the v1 spec).
_ADMIN_STRING_FIELDS = frozenset({"email", "firstname", "lastname", "roleName"})
_ADMIN_BOOL_FIELDS = frozenset({"enableMultiFactor", "apiKeyAllowed"})


def _profile_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The writable profile fields of `body`, type-checked."""
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key in _STRING_FIELDS:
            ok = value is None or isinstance(value, str)
        elif key in _BOOL_FIELDS:
            value = as_bool(value)
            ok = value is not None
        elif key in _LIST_FIELDS:
            ok = value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
        elif key in _OBJECT_FIELDS:
            ok = value is None or isinstance(value, dict)
        elif key in _INT_FIELDS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        else:
            continue  # read-only or unknown: ignored
        if not ok:
            raise ApiError(400, f"Bad Request: invalid value for {key}")
        changes[key] = value
    for key in ("email", "username"):
        if key in changes and not (isinstance(changes[key], str) and changes[key].strip()):
            raise ApiError(400, f"Bad Request: {key} cannot be empty")
    if changes.get("email") and "@" not in changes["email"]:
        raise ApiError(400, "Bad Request: email is not a valid email address")
    if changes.get("account_locked") is False:
        changes["account_locked_date"] = None
        changes["badLoginAttempts"] = 0
    return changes


def as_bool(value: Any) -> bool | None:
    """A JSON boolean, or the integers 1 and 0 JumpCloud takes for one; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _fields_param(request: Request) -> tuple[str, ...]:
    return tuple(n for v in request.query_params.getlist("fields") for n in v.split(" ") if n)


# ---- system users --------------------------------------------------------------------------------------


async def list_systemusers(request: Request) -> Response:
    tenant = tenant_of(request)
    query = parse_list_query(request.query_params, V1)
    return v1_list(selected(tenant, "users", lambda: tenant.records("users"), query), query)


async def get_systemuser(request: Request) -> Response:
    record = _user(request)
    return JSONResponse(project(record, _fields_param(request)))


async def create_systemuser(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request)
    for key in ("email", "username"):
        if not isinstance(body.get(key), str) or not body[key].strip():
            raise ApiError(400, f"Bad Request: {key} is required")
    state = body.get("state", tenant.default_user_state)
    if state not in _CREATE_STATES:
        raise ApiError(400, f"Bad Request: state must be one of {', '.join(_CREATE_STATES)} when creating a user")
    if body.get("suspended"):
        raise ApiError(400, "Bad Request: a new user cannot be suspended")
    changes = _profile_changes(body)
    if tenant.user_by_email(changes["email"]) or tenant.user_by_username(changes["username"]):
        raise ApiError(409, "Already Exists: email and username must be unique")
    uid = tenant.new_id()
    now = time.time()
    record = new_user_record(uid, tenant.org_id, now, len(tenant.users))
    record.update(changes)
    record.update(state=state, activated=state == "ACTIVATED", suspended=False)
    if record["mfa"] is None:
        record["mfa"] = {"configured": False, "exclusion": False}
    tenant.add_user(record)
    return JSONResponse(record)


async def update_systemuser(request: Request) -> Response:
    tenant = tenant_of(request)
    record = _user(request)
    body = await json_body(request)
    changes = _profile_changes(body)
    if "state" in body or "suspended" in body:
        changes.update(_suspension_change(body, record))
    tenant.update_user(record["_id"], changes)
    return JSONResponse(record)


def _suspension_change(body: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Suspend with `suspended: true` or `state: "SUSPENDED"` (or both); unsuspend with `suspended: false` or
    `state: "ACTIVATED"`. Sent together, they must agree. The other flag follows, so the record stays consistent;
    unsuspending a user that is not suspended changes nothing."""
    suspended = as_bool(body["suspended"]) if "suspended" in body else None
    state = body.get("state")
    if ("suspended" in body and suspended is None) or ("state" in body and state not in ("ACTIVATED", "SUSPENDED")):
        raise ApiError(400, "Bad Request: invalid value for suspended or state (true/SUSPENDED, false/ACTIVATED)")
    if suspended is not None and state is not None and suspended != (state == "SUSPENDED"):
        raise ApiError(400, 'Bad Request: "suspended" and "state" disagree (true/SUSPENDED or false/ACTIVATED)')
    if suspended is True or state == "SUSPENDED":
        return {"suspended": True, "state": "SUSPENDED"}
    if state == "ACTIVATED" or record.get("state") == "SUSPENDED" or record.get("suspended"):
        return {"suspended": False, "state": "ACTIVATED", "activated": True}
    return {"suspended": False}


async def delete_systemuser(request: Request) -> Response:
    tenant = tenant_of(request)
    record = tenant.delete_user(_user(request)["_id"])
    return JSONResponse(record)


async def activate_systemuser(request: Request) -> Response:
    tenant = tenant_of(request)
    record = _user(request)
    await json_body(request)
    if record.get("state") != "STAGED":
        raise ApiError(400, "Bad Request: only a user in the STAGED state can be activated")
    tenant.update_user(record["_id"], {"state": "ACTIVATED", "activated": True})
    return Response(status_code=200)


def _user(request: Request) -> dict[str, Any]:
    record = tenant_of(request).users.get(request.path_params["id"])
    if record is None:
        raise ApiError(404, "Not Found: no system user with this id")
    return record


def new_user_record(uid: str, org_id: str, now: float, n: int) -> dict[str, Any]:
    """The record JumpCloud returns for a user created with only email and username: every field present,
    unset strings as ""."""
    return {
        "_id": uid, "id": uid, "account_locked": False, "account_locked_date": None, "activated": False,
        "addresses": [], "allow_public_key": True, "alternateEmail": "", "attributes": [], "badLoginAttempts": 0,
        "company": "", "costCenter": "", "created": iso_time(now), "creationSource": "jumpcloud:api",
        "department": "", "description": "", "disableDeviceMaxLoginAttempts": False, "displayname": "",
        "email": "", "employeeIdentifier": None, "employeeType": "", "enable_managed_uid": False,
        "enable_user_portal_multifactor": False, "external_dn": "", "external_source_type": "",
        "externally_managed": False, "firstname": "", "jobTitle": "", "lastname": "", "ldap_binding_user": False,
        "location": "", "managedAppleId": "", "manager": None, "mfa": {"configured": False, "exclusion": False},
        "mfaEnrollment": {"overallStatus": "NOT_ENROLLED", "totpStatus": "NOT_ENROLLED",
                          "webAuthnStatus": "NOT_ENROLLED", "pushStatus": "NOT_ENROLLED"},
        "middlename": "", "organization": org_id, "password_expired": False, "password_never_expires": False,
        "passwordless_sudo": False, "phoneNumbers": [], "public_key": "", "relationships": [],
        "restrictedFields": [], "samba_service_user": False, "ssh_keys": [], "state": "STAGED", "sudo": False,
        "suspended": False, "totp_enabled": False, "unix_guid": 100000 + n, "unix_uid": 100000 + n, "username": "",
    }


# ---- applications --------------------------------------------------------------------------------------


async def list_applications(request: Request) -> Response:
    tenant = tenant_of(request)
    params = request.query_params
    if params.get("sort"):
        query = parse_list_query(params, V1)
    else:  # the documented default sort of this endpoint
        query = parse_list_query({**{k: params.getlist(k) for k in params.keys()}, "sort": ["name"]}, V1)
    return v1_list(selected(tenant, "apps", lambda: tenant.records("apps"), query), query)


async def get_application(request: Request) -> Response:
    record = tenant_of(request).apps.get(request.path_params["id"])
    if record is None:
        raise ApiError(404, "Not Found: no application with this id")
    return JSONResponse(record)


# ---- administrators ------------------------------------------------------------------------------------


async def list_admins(request: Request) -> Response:
    tenant = tenant_of(request)
    query = parse_list_query(request.query_params, V1)
    records = selected(tenant, "admins", lambda: tenant.records("admins"), query)
    return v1_list(records, query)


async def update_admin(request: Request) -> Response:
    tenant = tenant_of(request)
    admin_id = request.path_params["id"]
    if admin_id not in tenant.admins:
        raise ApiError(404, "Not Found: no administrator with this id")
    body = await json_body(request)
    changes = admin_changes(tenant, body)
    return JSONResponse(tenant.update_admin(admin_id, changes))


def admin_changes(tenant: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Validated admin fields of `body`; a role is named (case-insensitively) and stored as the org spells it."""
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key in _ADMIN_STRING_FIELDS and not isinstance(value, str):
            raise ApiError(400, f"Bad Request: invalid value for {key}")
        if key in _ADMIN_BOOL_FIELDS and not isinstance(value, bool):
            raise ApiError(400, f"Bad Request: invalid value for {key}")
        if key in _ADMIN_STRING_FIELDS or key in _ADMIN_BOOL_FIELDS:
            changes[key] = value
    if "email" in changes and "@" not in changes["email"]:
        raise ApiError(400, "Bad Request: email is not a valid email address")
    role_name = changes.pop("roleName", None)
    names = body.get("roleNames")
    if role_name is None and names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "Bad Request: invalid value for roleNames")
        role_name = names[0]
    if role_name is not None:
        role = tenant.role_named(role_name)
        if role is None:
            raise ApiError(400, f"Bad Request: unknown role {role_name!r}")
        changes.update(role=role[0], roleName=role[1], roleNames=[role[1]])
    return changes


# ---- organisations -------------------------------------------------------------------------------------

#: The one /api path that names no org: the gate does not ask a multi-tenant key for `x-org-id` here.
ORGANIZATIONS_PATH = "/api/organizations"


async def list_organizations(request: Request) -> Response:
    """The orgs the key reaches (`organizationslist`): `{"_id", "displayName", "logoUrl"}` each, in `_id` order
    unless `sort` says otherwise, paged, projected and filtered like the other v1 lists; removed orgs left out.
    Single-tenant: the one org (the gate already answered 403/404 when `x-org-id` or a removal says so).
    Multi-tenant: every org, whatever `x-org-id` says (the gate ignores it on this path). `search` and
    `sortIgnoreCase` are ignored, as on the other listings."""
    state = request.app.state.simulator
    query = parse_list_query(request.query_params, V1)
    if not query.sort:
        query = replace(query, sort=(("_id", False),))
    records = [{"_id": t.org_id, "displayName": t.display_name, "logoUrl": ""} for t in state.listed_orgs()]
    return v1_list(select(records, query), query)


ROUTES = [
    Route("/api/systemusers", list_systemusers, methods=["GET"]),
    Route("/api/systemusers", create_systemuser, methods=["POST"]),
    Route("/api/systemusers/{id}", get_systemuser, methods=["GET"]),
    Route("/api/systemusers/{id}", update_systemuser, methods=["PUT"]),
    Route("/api/systemusers/{id}", delete_systemuser, methods=["DELETE"]),
    Route("/api/systemusers/{id}/state/activate", activate_systemuser, methods=["POST"]),
    Route("/api/applications", list_applications, methods=["GET"]),
    Route("/api/applications/{id}", get_application, methods=["GET"]),
    Route("/api/users", list_admins, methods=["GET"]),
    Route("/api/users/{id}", update_admin, methods=["PUT"]),
    Route(ORGANIZATIONS_PATH, list_organizations, methods=["GET"]),
]
