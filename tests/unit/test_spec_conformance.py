"""Every response shape jumpsync uses, checked against JumpCloud's official Swagger 2.0 specs.

The schemas come from the operations in the specs themselves (`paths[...][method].responses[status].schema`),
converted to JSON Schema (draft 4, which Swagger 2.0 builds on): `$ref`s resolve into the spec's `definitions`,
every *property* also accepts `null` (real responses carry null in fields typed as string, array or object, see
docs in /work/shared/jumpcloud-api.md), unknown properties stay allowed; types, enums, `required` and envelope
shapes are kept. Envelope keys and the `x-total-count` header, which the specs do not mark required, are
asserted on top.

`GET /api/users` (administrators) has no operation in the v1 spec; its records are checked against the v1
`userreturn` definition, the response of the documented `PUT /api/users/{id}`, inside the same
`{"totalCount", "results"}` envelope as the other v1 lists.

The specs are vendored in simulator/openapi/ (unchanged copies) so this runs on a clean machine.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant
from tests.support.spec import (
    check,
    check_op,
    error_schema,
    spec,
    validator,
)

KEY = "conformance-key"
# Big enough that every untidy variant of the generator shows up in the validated records.
SPEC = TenantSpec(seed=2024, users=400, admins=30, groups=25, apps=10, avg_members_per_group=15,
                  users_per_app=10, groups_per_app=3, big_groups=1, big_group_share=0.4)

# ---- the converter itself ---------------------------------------------------------------------------------


def test_converted_schemas_still_refuse_wrong_types_enums_and_missing_required():
    """Guard against a converter that lets everything through."""
    user = validator("v1", {"$ref": "#/definitions/systemuserreturn"})
    assert user.is_valid({"_id": "a", "state": None, "attributes": None, "extra": 1})
    assert not user.is_valid({"state": "ENABLED"})
    assert not user.is_valid({"activated": "yes"})
    assert not user.is_valid({"mfa": {"configured": "no"}})
    assert not user.is_valid(None)
    app = validator("v1", {"$ref": "#/definitions/application"})
    assert not app.is_valid({"name": "x", "ssoUrl": "y"})  # config is required
    path = validator("v2", {"$ref": "#/definitions/GraphObjectWithPaths"})
    assert not path.is_valid({"id": "x", "type": "user"})  # paths required
    assert not path.is_valid({"id": "x", "type": "person", "paths": []})  # GraphType enum
    group = validator("v2", {"$ref": "#/definitions/UserGroup"})
    assert not group.is_valid({"attributes": {"sudo": {"enabled": True}}})  # sudo.withoutPassword required
    assert not group.is_valid({"membershipMethod": ""})


# ---- responses ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    tenant = generate_tenant(SPEC)
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=20) as client:
            client.dump = httpx.get(srv.url + "/_sim/tenant").json()  # type: ignore[attr-defined]
            yield client


def all_v1_pages(sim: httpx.Client, path: str, version_path: str, schema: dict[str, Any] | None = None) -> list:
    """Every page of a v1 listing, each validated, with the envelope checked."""
    records, skip = [], 0
    while True:
        resp = sim.get(path, params={"limit": 100, "skip": skip, "sort": "_id"})
        if schema is None:
            body = check_op("v1", version_path, "get", resp)
        else:
            assert resp.status_code == 200
            body = resp.json()
            check("v1", schema, body)
        assert set(body) == {"totalCount", "results"} and isinstance(body["totalCount"], int)
        records += body["results"]
        skip += 100
        if not body["results"]:
            return records


def all_v2_pages(sim: httpx.Client, path: str, spec_path: str, **params) -> list:
    """Every page of a v2 listing (one past the end too), each validated, with `x-total-count` on each."""
    records, skip, totals = [], 0, set()
    while True:
        resp = sim.get(path, params={"limit": 100, "skip": skip, **params})
        body = check_op("v2", spec_path, "get", resp)
        assert isinstance(body, list)
        totals.add(resp.headers["x-total-count"])
        records += body
        skip += 100
        if not body:
            assert totals == {str(len(records))}
            return records


def test_systemusers_list_and_items(sim):
    users = all_v1_pages(sim, "/api/systemusers", "/systemusers")
    assert len(users) == SPEC.users
    for user in users[:: max(1, len(users) // 40)]:
        one = check_op("v1", "/systemusers/{id}", "get", sim.get(f"/api/systemusers/{user['_id']}"))
        assert one == user
    # the untidy variants were among the validated records
    assert any("state" not in u for u in users) and any(u["attributes"] is None for u in users)
    assert any(u["manager"] is None for u in users) and any(u["employeeIdentifier"] is None for u in users)


def test_applications_list_and_items(sim):
    apps = all_v1_pages(sim, "/api/applications", "/applications")
    assert len(apps) == SPEC.apps
    for app in apps:
        assert check_op("v1", "/applications/{id}", "get", sim.get(f"/api/applications/{app['_id']}")) == app


def test_admins_list_matches_userreturn_in_the_v1_envelope(sim):
    assert "get" not in spec("v1")["paths"]["/users"]  # why this one is checked by definition, not operation
    envelope = {"type": "object", "required": ["totalCount", "results"],
                "properties": {"totalCount": {"type": "integer"},
                               "results": {"type": "array", "items": {"$ref": "#/definitions/userreturn"}}}}
    admins = all_v1_pages(sim, "/api/users", "/users", schema=envelope)
    assert len(admins) == SPEC.admins


def test_usergroups_list_and_items(sim):
    groups = all_v2_pages(sim, "/api/v2/usergroups", "/usergroups")
    assert len(groups) == SPEC.groups
    for group in groups:
        assert check_op("v2", "/usergroups/{id}", "get", sim.get(f"/api/v2/usergroups/{group['id']}")) == group


def test_groups_directories_and_search_match_the_specs(sim):
    """`Group_List`, `Directories_List` and `User_Search`: listed by public clients, not by jumpsync."""
    groups = all_v2_pages(sim, "/api/v2/groups", "/groups")
    assert [g["id"] for g in groups] == [g["id"] for g in sim.dump["groups"]]
    assert all_v2_pages(sim, "/api/v2/directories", "/directories") == []
    found = check_op("v1", "/search/systemusers", "post", sim.post("/api/search/systemusers", json={
        "filter": [{"state": "ACTIVATED"}], "fields": "email username state", "limit": 100}))
    assert found["results"] and all(u["state"] == "ACTIVATED" for u in found["results"])


def test_members_and_membership(sim):
    for group in sim.dump["groups"]:
        members = all_v2_pages(sim, f"/api/v2/usergroups/{group['id']}/members", "/usergroups/{group_id}/members")
        membership = all_v2_pages(sim, f"/api/v2/usergroups/{group['id']}/membership",
                                  "/usergroups/{group_id}/membership")
        assert [m["to"]["id"] for m in members] == [m["id"] for m in membership] == group["members"]


def test_associations_both_targets_and_traversals(sim):
    for app in sim.dump["apps"]:
        base = f"/api/v2/applications/{app['_id']}"
        for targets in ("user", "user_group"):
            conns = all_v2_pages(sim, f"{base}/associations", "/applications/{application_id}/associations",
                                 targets=targets)
            assert {c["to"]["type"] for c in conns} <= {targets}
        users = all_v2_pages(sim, f"{base}/users", "/applications/{application_id}/users")
        groups = all_v2_pages(sim, f"{base}/usergroups", "/applications/{application_id}/usergroups")
        assert [g["id"] for g in groups] == app["groups"]
        assert any(len(p) == 2 for u in users for p in u["paths"]) == any(
            g["members"] for g in sim.dump["groups"] if g["id"] in app["groups"])


def test_memberof(sim):
    for user in sim.dump["users"][:60]:
        all_v2_pages(sim, f"/api/v2/users/{user['_id']}/memberof", "/users/{user_id}/memberof")


# ---- write responses -------------------------------------------------------------------------------------


def test_write_responses(sim):
    created = check_op("v1", "/systemusers", "post", sim.post(
        "/api/systemusers", json={"email": "conform@example.org", "username": "conform", "attributes": None}))
    uid = created["_id"]
    check_op("v1", "/systemusers/{id}", "put",
             sim.put(f"/api/systemusers/{uid}", json={"suspended": True, "state": "SUSPENDED"}))
    check_op("v1", "/systemusers/{id}", "put",
             sim.put(f"/api/systemusers/{uid}", json={"suspended": False, "state": "ACTIVATED", "manager": ""}))
    staged = sim.post("/api/systemusers", json={"email": "st@example.org", "username": "st"}).json()
    activated = sim.post(f"/api/systemusers/{staged['_id']}/state/activate", json={})
    assert activated.status_code == 200 and activated.content == b""  # the spec declares no body
    admin = sim.dump["admins"][0]
    check_op("v1", "/users/{id}", "put", sim.put(f"/api/users/{admin['_id']}", json={"roleName": "Manager"}))

    group = check_op("v2", "/usergroups", "post",
                     sim.post("/api/v2/usergroups", json={"name": "Conformance"}), status=201)
    check_op("v2", "/usergroups/{id}", "put",
             sim.put(f"/api/v2/usergroups/{group['id']}", json={"name": "Conformance 2", "description": None}))
    member = sim.post(f"/api/v2/usergroups/{group['id']}/members", json={"op": "add", "type": "user", "id": uid})
    assert member.status_code == 204 and member.content == b""
    app_id = sim.dump["apps"][0]["_id"]
    bind = sim.post(f"/api/v2/applications/{app_id}/associations",
                    json={"op": "add", "type": "user_group", "id": group["id"]})
    assert bind.status_code == 204 and bind.content == b""
    check_op("v2", "/usergroups/{id}", "delete", sim.delete(f"/api/v2/usergroups/{group['id']}"))
    check_op("v1", "/systemusers/{id}", "delete", sim.delete(f"/api/systemusers/{uid}"))


@pytest.mark.parametrize("version,status,request_args", [
    ("v1", 400, ("GET", "/api/systemusers", {"params": {"limit": 1000}})),
    ("v1", 404, ("GET", "/api/systemusers/0123456789abcdef01234567", {})),
    ("v1", 409, ("POST", "/api/systemusers", {"json": {"email": "dup@example.org", "username": "dup"}})),
    ("v2", 400, ("GET", "/api/v2/applications/{app}/associations", {})),
    ("v2", 404, ("GET", "/api/v2/usergroups/0123456789abcdef01234567", {})),
    ("v2", 409, ("POST", "/api/v2/usergroups", {"json": {"name": "{group}"}})),
])
def test_error_bodies_match_the_standard_errors(sim, version, status, request_args):
    method, path, kwargs = request_args
    path = path.format(app=sim.dump["apps"][0]["_id"])
    kwargs = json.loads(json.dumps(kwargs).replace("{group}", sim.dump["groups"][0]["name"]))
    if status == 409 and version == "v1":
        sim.request(method, path, **kwargs)
    resp = sim.request(method, path, **kwargs)
    assert resp.status_code == status
    check(version, error_schema(version, status), resp.json())
    assert resp.json()["message"]


def test_unauthorized_body_matches_the_standard_401(sim):
    resp = httpx.get(str(sim.base_url) + "/api/systemusers")
    assert resp.status_code == 401
    check("v1", error_schema("v1", 401), resp.json())


# ---- Directory Insights -----------------------------------------------------------------------------------


def test_directory_insights_query_and_events_match_the_di_spec():
    """The body jumpsync's events client sends is an ``EventQuery``, and the simulator answers the 200 schema.
    ``search_after`` goes back as the ``X-Search_after`` header gave it, ``[epoch ms, id]`` as the spec's prose
    shows, although its schema says an array of strings: the page token is checked without it."""
    from datetime import UTC, datetime, timedelta

    from jumpcloud.events import EVENTS_PATH, event_query

    query = event_query(datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(seconds=1), limit=2)
    check("directory-insights", {"$ref": "#/definitions/EventQuery"}, query)
    assert not validator("directory-insights", {"$ref": "#/definitions/EventQuery"}).is_valid({"limit": 2})
    tenant = generate_tenant(TenantSpec(seed=3, users=5, admins=1, groups=2, apps=1))
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv:
        for n in range(3):
            tenant.update_group(next(iter(tenant.groups)), {"name": f"n{n}"})
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=20) as client:
            first = check_op("directory-insights", "/events", "post", client.post(EVENTS_PATH, json=query))
            token = json.loads(client.post(EVENTS_PATH, json=query).headers["X-Search_after"])
            rest = check_op("directory-insights", "/events", "post",
                            client.post(EVENTS_PATH, json={**query, "search_after": token}))
    assert [len(first), len(rest)] == [2, 1]
