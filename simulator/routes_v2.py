"""v2 endpoints (`/api/v2/...`): user groups, their members, application bindings and graph traversals.

Listings are bare arrays with the total in `x-total-count`. Member and association changes answer 204; as
observed on JumpCloud, adding an existing edge answers 409 and removing an absent one 404 (and an unknown user
or group 404), so a client can treat both as "already so".
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.model import USER, USER_GROUP, Tenant
from simulator.query import V2, parse_list_query
from simulator.responses import (
    ApiError,
    json_body,
    selected,
    tenant_of,
    v2_connections,
    v2_list,
    v2_typed_connections,
)

_MEMBERSHIP_METHODS = ("NOTSET", "STATIC", "DYNAMIC_REVIEW_REQUIRED", "DYNAMIC_AUTOMATED")
_GRAPH_FILTER_ALIASES = {"object_id": "id"}  # the filter field name the spec documents for traversals


# ---- user groups ---------------------------------------------------------------------------------------


#: Sort fields `/api/v2/usergroups` refuses although they exist (observed by a public client on the real service:
#: `sort=id` answers 400 `invalid sort field: id`; `name` is the unique field it sorts by).
_UNSORTABLE_GROUP_FIELDS = frozenset({"id"})


async def list_usergroups(request: Request) -> Response:
    tenant = tenant_of(request)
    query = parse_list_query(request.query_params, V2)
    for field, _ in query.sort:
        if field in _UNSORTABLE_GROUP_FIELDS:
            raise ApiError(400, f"invalid sort field: {field}")
    return v2_list(selected(tenant, "groups", lambda: tenant.records("groups"), query), query)


#: The fields of the spec's `Group` that a user group has (`/api/v2/groups` lists user and system groups).
_GROUP_FIELDS = ("attributes", "description", "email", "id", "name", "type")


async def list_groups(request: Request) -> Response:
    """`Group_List`: every group of the org, user and system groups alike, as `Group` objects; the simulator
    keeps no systems, so only user groups are listed."""
    tenant = tenant_of(request)
    query = parse_list_query(request.query_params, V2)
    records = selected(tenant, "all-groups", lambda: tenant.cached(("all-groups",), lambda: [
        {k: g.get(k) for k in _GROUP_FIELDS} for g in tenant.records("groups")]), query)
    return v2_list(records, query)


async def list_directories(request: Request) -> Response:
    """`Directories_List`: the org's directories (Active Directory, Google Workspace, Microsoft 365, LDAP,
    Workday). The simulator keeps none: an empty list, paged and counted as every v2 list is."""
    query = parse_list_query(request.query_params, V2, filterable=False)
    return v2_list([], query)


async def get_usergroup(request: Request) -> Response:
    return JSONResponse(_group(request))


#: What a user group's writable fields are when a body leaves them out (create, and replace by PUT).
_GROUP_DEFAULTS: dict[str, Any] = {"attributes": None, "description": "", "email": "", "membershipMethod": "NOTSET"}


async def create_usergroup(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request)
    fields = _group_fields(body)
    record = {**_GROUP_DEFAULTS, "id": tenant.new_id(), "name": "", "type": "user_group"}
    record.update(fields)
    tenant.add_group(record)
    return JSONResponse(record, status_code=201)


async def update_usergroup(request: Request) -> Response:
    """A v2 PUT replaces the group: a writable field the body leaves out goes back to its default (a public client
    found this writing to a real organisation, and reads the group first to merge its change)."""
    tenant = tenant_of(request)
    group = _group(request)
    fields = _group_fields(await json_body(request))
    return JSONResponse(tenant.update_group(group["id"], {**_GROUP_DEFAULTS, **fields}))


async def delete_usergroup(request: Request) -> Response:
    tenant = tenant_of(request)
    return JSONResponse(tenant.delete_group(_group(request)["id"]))


def _group_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Validated UserGroupPost / UserGroupPut fields (`name` is required by both)."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "Bad Request: name is required")
    fields: dict[str, Any] = {"name": name}
    for key in ("description", "email"):
        if key in body:
            if body[key] is not None and not isinstance(body[key], str):
                raise ApiError(400, f"Bad Request: invalid value for {key}")
            fields[key] = body[key]
    if "attributes" in body:
        if body["attributes"] is not None and not isinstance(body["attributes"], dict):
            raise ApiError(400, "Bad Request: invalid value for attributes")
        fields["attributes"] = body["attributes"]
    if "membershipMethod" in body:
        if body["membershipMethod"] not in _MEMBERSHIP_METHODS:
            raise ApiError(400, f"Bad Request: membershipMethod must be one of {', '.join(_MEMBERSHIP_METHODS)}")
        fields["membershipMethod"] = body["membershipMethod"]
    return fields


def _group(request: Request, key: str = "id") -> dict[str, Any]:
    record = tenant_of(request).groups.get(request.path_params[key])
    if record is None:
        raise ApiError(404, "Not Found: no user group with this id")
    return record


# ---- members and membership ----------------------------------------------------------------------------


async def list_members(request: Request) -> Response:
    tenant = tenant_of(request)
    group = _group(request)
    query = parse_list_query(request.query_params, V2, sortable=False, filterable=False, projectable=False)
    return v2_connections(tenant.members[group["id"]].as_list(), USER, query)


async def change_members(request: Request) -> Response:
    tenant = tenant_of(request)
    group = _group(request)
    op, kind, target = _graph_operation(await json_body(request), (USER,))
    if op == "add":
        tenant.add_member(group["id"], target)
    else:
        tenant.remove_member(group["id"], target)
    return Response(status_code=204)


async def list_membership(request: Request) -> Response:
    tenant = tenant_of(request)
    gid = _group(request)["id"]
    query = parse_list_query(request.query_params, V2, projectable=False, aliases=_GRAPH_FILTER_ALIASES)
    records = selected(tenant, ("membership", gid), lambda: tenant.group_membership(gid), query)
    return v2_list(records, query)


async def list_user_memberof(request: Request) -> Response:
    tenant = tenant_of(request)
    uid = request.path_params["id"]
    if uid not in tenant.users:
        raise ApiError(404, "Not Found: no user with this id")
    query = parse_list_query(request.query_params, V2, projectable=False, aliases=_GRAPH_FILTER_ALIASES)
    records = selected(tenant, ("memberof", uid), lambda: tenant.user_memberof(uid), query)
    return v2_list(records, query)


#: The `targets` that `/users/{id}/associations` and `/usergroups/{id}/associations` take (the spec's enum); the
#: simulator keeps only application bindings, so the others answer an empty list.
_ASSOCIATION_TARGETS = ("active_directory", "application", "g_suite", "idp_routing_policy", "ldap_server",
                        "office_365", "password_manager_item", "radius_server", "system", "system_group")


async def list_user_associations(request: Request) -> Response:
    """The direct associations of a user: `?targets=application` lists the apps bound to the user."""
    tenant = tenant_of(request)
    uid = request.path_params["id"]
    if uid not in tenant.users:
        raise ApiError(404, "Not Found: no user with this id")
    return _object_associations(request, tenant.user_apps(uid))


async def list_group_associations(request: Request) -> Response:
    """The direct associations of a user group: `?targets=application` lists the apps bound to the group."""
    tenant = tenant_of(request)
    return _object_associations(request, tenant.group_apps(_group(request)["id"]))


def _object_associations(request: Request, app_ids: list[str]) -> Response:
    targets = _targets(request, _ASSOCIATION_TARGETS)
    query = parse_list_query(request.query_params, V2, sortable=False, filterable=False, projectable=False)
    return v2_typed_connections([(t, i) for t in targets for i in (app_ids if t == "application" else [])], query)


def _targets(request: Request, allowed: tuple[str, ...]) -> list[str]:
    """The `targets` of an associations listing (required): one, several comma-joined (`user,user_group`, as
    generated SDKs send an array), or the parameter repeated; each one of `allowed`, duplicates dropped."""
    names = [n.strip() for v in request.query_params.getlist("targets") for n in v.split(",") if n.strip()]
    if not names:
        raise ApiError(400, f"Bad Request: targets is required ({', '.join(allowed)})")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ApiError(400, f"Bad Request: invalid targets {','.join(unknown)!r}: use {', '.join(allowed)}")
    return list(dict.fromkeys(names))


# ---- applications --------------------------------------------------------------------------------------

def v2_application(record: dict[str, Any], provisioning: dict[str, Any]) -> dict[str, Any]:
    """An application as `/api/v2/applications` returns it. Not in JumpCloud's spec (the path is declared with no
    operation): the fields are those a public client reads (`_id`, `name`, `displayName`, `displayLabel`,
    `description`, `organization`, `sso`, `provision`); `provision` is present only where the app has the key."""
    sso = record.get("sso") or {}
    out = {"_id": record["_id"], "name": record.get("name"), "displayName": record.get("displayName"),
           "displayLabel": record.get("displayLabel"), "description": record.get("description"),
           "organization": record.get("organization"),
           "sso": {"type": sso.get("type"), "hidden": sso.get("hidden"), "beta": sso.get("beta"),
                   "jit": {"enabled": bool(sso.get("jit"))}}}
    if record["_id"] in provisioning:
        out["provision"] = provisioning[record["_id"]]
    return out


async def list_applications_v2(request: Request) -> Response:
    tenant = tenant_of(request)
    query = parse_list_query(request.query_params, V2, sortable=False, filterable=False, projectable=False)
    records = tenant.cached(("v2-apps",), lambda: [v2_application(a, tenant.app_provisioning)
                                                   for a in tenant.records("apps")])
    return v2_list(records, query)


async def get_application_v2(request: Request) -> Response:
    tenant = tenant_of(request)
    return JSONResponse(v2_application(tenant.apps[_app(request)], tenant.app_provisioning))



async def list_associations(request: Request) -> Response:
    tenant = tenant_of(request)
    aid = _app(request)
    targets = _targets(request, (USER, USER_GROUP))
    query = parse_list_query(request.query_params, V2, sortable=False, filterable=False, projectable=False)
    if len(targets) == 1:  # the common case: paged without building a list of the whole set
        ids = tenant.app_users[aid] if targets[0] == USER else tenant.app_groups[aid]
        return v2_connections(ids.as_list(), targets[0], query)
    edges = {USER: tenant.app_users[aid], USER_GROUP: tenant.app_groups[aid]}
    return v2_typed_connections([(t, i) for t in targets for i in edges[t].as_list()], query)


async def change_associations(request: Request) -> Response:
    tenant = tenant_of(request)
    aid = _app(request)
    op, kind, target = _graph_operation(await json_body(request), (USER, USER_GROUP))
    if op == "add":
        tenant.bind(aid, kind, target)
    else:
        tenant.unbind(aid, kind, target)
    return Response(status_code=204)


async def list_app_users(request: Request) -> Response:
    return _traversal(request, "users", Tenant.app_user_paths)


async def list_app_usergroups(request: Request) -> Response:
    return _traversal(request, "usergroups", Tenant.app_group_paths)


def _traversal(request: Request, name: str, compute: Any) -> Response:
    tenant = tenant_of(request)
    aid = _app(request)
    query = parse_list_query(request.query_params, V2, sortable=False, projectable=False,
                             aliases=_GRAPH_FILTER_ALIASES)
    records = selected(tenant, (name, aid), lambda: compute(tenant, aid), query)
    return v2_list(records, query)


def _app(request: Request) -> str:
    aid = request.path_params["id"]
    if aid not in tenant_of(request).apps:
        raise ApiError(404, "Not Found: no application with this id")
    return aid


def _graph_operation(body: dict[str, Any], kinds: tuple[str, ...]) -> tuple[str, str, str]:
    """Validate a GraphOperation body: {"op": "add" | "remove", "type": one of `kinds`, "id": "..."}."""
    op, kind, target = body.get("op"), body.get("type"), body.get("id")
    if op not in ("add", "remove"):
        raise ApiError(400, "Bad Request: op must be add or remove")
    if kind not in kinds:
        raise ApiError(400, f"Bad Request: type must be one of {', '.join(kinds)}")
    if not isinstance(target, str) or not target:
        raise ApiError(400, "Bad Request: id is required")
    return op, kind, target


ROUTES = [
    Route("/api/v2/groups", list_groups, methods=["GET"]),
    Route("/api/v2/directories", list_directories, methods=["GET"]),
    Route("/api/v2/usergroups", list_usergroups, methods=["GET"]),
    Route("/api/v2/usergroups", create_usergroup, methods=["POST"]),
    Route("/api/v2/usergroups/{id}", get_usergroup, methods=["GET"]),
    Route("/api/v2/usergroups/{id}", update_usergroup, methods=["PUT"]),
    Route("/api/v2/usergroups/{id}", delete_usergroup, methods=["DELETE"]),
    Route("/api/v2/usergroups/{id}/members", list_members, methods=["GET"]),
    Route("/api/v2/usergroups/{id}/members", change_members, methods=["POST"]),
    Route("/api/v2/usergroups/{id}/membership", list_membership, methods=["GET"]),
    Route("/api/v2/applications", list_applications_v2, methods=["GET"]),
    Route("/api/v2/applications/{id}", get_application_v2, methods=["GET"]),
    Route("/api/v2/applications/{id}/associations", list_associations, methods=["GET"]),
    Route("/api/v2/applications/{id}/associations", change_associations, methods=["POST"]),
    Route("/api/v2/applications/{id}/users", list_app_users, methods=["GET"]),
    Route("/api/v2/applications/{id}/usergroups", list_app_usergroups, methods=["GET"]),
    Route("/api/v2/users/{id}/memberof", list_user_memberof, methods=["GET"]),
    Route("/api/v2/users/{id}/associations", list_user_associations, methods=["GET"]),
    Route("/api/v2/usergroups/{id}/associations", list_group_associations, methods=["GET"]),
]
