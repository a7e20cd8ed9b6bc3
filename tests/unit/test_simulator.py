"""The JumpCloud simulator over real HTTP: paging, query parameters, auth and org rules, the write API's status
codes and state rules, the /_sim control endpoints and request stats."""

from __future__ import annotations

import concurrent.futures
import re
import statistics
import threading
import time

import httpx
import pytest

from simulator.cli import build_state
from simulator.faults import Faults
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "sim-test-key-5f2c"
SPEC = TenantSpec(seed=11, users=230, admins=14, groups=15, apps=6, avg_members_per_group=10, users_per_app=6,
                  groups_per_app=2, big_groups=1, big_group_share=0.6)
UNAUTHORIZED = {"error": "Unauthorized", "message": "Unauthorized: api key user not found"}


def start(spec: TenantSpec = SPEC, **state_kwargs) -> SimulatorServer:
    tenant = generate_tenant(spec)
    return SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY, **state_kwargs)).start()


@pytest.fixture(scope="module")
def server():
    """A read-only simulator shared by the tests that do not write."""
    with start() as srv:
        yield srv


@pytest.fixture(scope="module")
def dump(server):
    return httpx.get(server.url + "/_sim/tenant").json()


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=10) as client:
        yield client


@pytest.fixture
def fresh():
    """A simulator of its own, for tests that write."""
    with start(TenantSpec(seed=21, users=40, admins=6, groups=5, apps=3, avg_members_per_group=6)) as srv:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=10) as client:
            client.dump = lambda: httpx.get(srv.url + "/_sim/tenant").json()  # type: ignore[attr-defined]
            yield client


def v1_all(api: httpx.Client, path: str, **params) -> list[dict]:
    records, skip = [], 0
    while True:
        body = api.get(path, params={"limit": 100, "skip": skip, **params}).json()
        records += body["results"]
        skip += 100
        if skip >= body["totalCount"]:
            return records


def v2_all(api: httpx.Client, path: str, **params) -> list[dict]:
    records, skip = [], 0
    while True:
        resp = api.get(path, params={"limit": 100, "skip": skip, **params})
        assert resp.status_code == 200, resp.text
        records += resp.json()
        skip += 100
        if skip >= int(resp.headers["x-total-count"]):
            return records


# ---- paging ----------------------------------------------------------------------------------------------


def test_v1_envelope_has_total_on_every_page_also_empty(api):
    first = api.get("/api/systemusers").json()
    assert set(first) == {"totalCount", "results"}
    assert first["totalCount"] == 230 and len(first["results"]) == 10  # default limit
    last = api.get("/api/systemusers", params={"limit": 100, "skip": 200}).json()
    assert last["totalCount"] == 230 and len(last["results"]) == 30
    past = api.get("/api/systemusers", params={"limit": 100, "skip": 500}).json()
    assert past == {"totalCount": 230, "results": []}


def test_v1_paging_with_sort_id_sees_every_user_once_in_order(api, dump):
    ids = [u["_id"] for u in v1_all(api, "/api/systemusers", sort="_id")]
    assert ids == sorted(u["_id"] for u in dump["users"])


def test_v2_lists_are_bare_arrays_with_total_header_on_every_page(api):
    resp = api.get("/api/v2/usergroups")
    assert isinstance(resp.json(), list) and len(resp.json()) == 10
    assert resp.headers["x-total-count"] == "15"
    empty = api.get("/api/v2/usergroups", params={"skip": 100})
    assert empty.json() == [] and empty.headers["x-total-count"] == "15"


@pytest.mark.parametrize("path", ["/api/systemusers", "/api/applications", "/api/users", "/api/v2/usergroups"])
def test_limit_over_100_is_refused_with_a_jumpcloud_error(api, path):
    resp = api.get(path, params={"limit": 101})
    assert resp.status_code == 400
    assert "limit" in resp.json()["message"] and resp.json()["code"] == 400
    assert api.get(path, params={"limit": 100}).status_code == 200


@pytest.mark.parametrize("params", [{"skip": -1}, {"limit": "ten"}, {"limit": -5}])
def test_bad_paging_values_are_400(api, params):
    assert api.get("/api/systemusers", params=params).status_code == 400


def test_group_members_are_graph_connections_and_page_completely(api, dump):
    big = max(dump["groups"], key=lambda g: len(g["members"]))
    assert len(big["members"]) == 138  # 60% of 230: more than one page
    members = v2_all(api, f"/api/v2/usergroups/{big['id']}/members")
    assert members[0] == {"attributes": None, "to": {"attributes": None, "id": big["members"][0], "type": "user"}}
    assert [m["to"]["id"] for m in members] == big["members"]


# ---- sort, fields, filter --------------------------------------------------------------------------------


def test_v1_sort_is_space_separated_and_minus_descends(api, dump):
    got = [u["_id"] for u in v1_all(api, "/api/systemusers", sort="-username")]
    assert got == [u["_id"] for u in sorted(dump["users"], key=lambda u: u["username"], reverse=True)]
    two_keys = v1_all(api, "/api/systemusers", sort="state -_id")
    expected = sorted(dump["users"], key=lambda u: u["_id"], reverse=True)
    expected.sort(key=lambda u: (u.get("state") is not None, u.get("state") or ""))  # missing state sorts first
    assert [u["_id"] for u in two_keys] == [u["_id"] for u in expected]


def test_v2_sort_is_comma_separated(api, dump):
    got = [g["name"] for g in v2_all(api, "/api/v2/usergroups", sort="-name")]
    assert got == sorted((g["name"] for g in dump["groups"]), reverse=True)
    got = v2_all(api, "/api/v2/usergroups", sort="membershipMethod,-name")
    assert [g["id"] for g in got] == [g["id"] for g in sorted(sorted(dump["groups"], key=lambda g: g["name"],
                                                                           reverse=True),
                                                                    key=lambda g: g["membershipMethod"])]


def test_applications_default_to_sorting_by_name(api, dump):
    names = [a["name"] for a in v1_all(api, "/api/applications")]
    assert names == sorted(a["name"] for a in dump["apps"])


def test_fields_keep_the_ids(api):
    v1 = api.get("/api/systemusers", params={"fields": "email username"}).json()["results"]
    assert all(set(u) == {"_id", "id", "email", "username"} for u in v1)
    one = api.get(f"/api/systemusers/{v1[0]['_id']}", params={"fields": "email"}).json()
    assert set(one) == {"_id", "id", "email"}
    v2 = api.get("/api/v2/usergroups", params={"fields": "name,email"}).json()
    assert all(set(g) == {"id", "name", "email"} for g in v2)


def test_v1_filters(api, dump):
    users = dump["users"]
    target = users[17]
    got = v1_all(api, "/api/systemusers", filter=f"email:$eq:{target['email']}")
    assert [u["_id"] for u in got] == [target["_id"]]
    not_active = v1_all(api, "/api/systemusers", filter="state:$ne:ACTIVATED")
    assert len(not_active) == sum(1 for u in users if u.get("state") != "ACTIVATED")
    suspended = v1_all(api, "/api/systemusers", filter="suspended:$eq:true")
    assert {u["_id"] for u in suspended} == {u["_id"] for u in users if u["suspended"] is True}
    numeric = v1_all(api, "/api/systemusers", filter="unix_uid:$gte:5200")
    assert len(numeric) == sum(1 for u in users if u["unix_uid"] >= 5200) == 30
    both = v1_all(api, "/api/systemusers", filter=["unix_uid:$lt:5100", "suspended:$eq:false"])
    assert len(both) == sum(1 for u in users if u["unix_uid"] < 5100 and u["suspended"] is False)
    nested = v1_all(api, "/api/systemusers", filter="mfa.configured:$eq:true")
    assert len(nested) == sum(1 for u in users if u["mfa"]["configured"])


def test_v2_filters(api, dump):
    group = dump["groups"][3]
    assert [g["id"] for g in v2_all(api, "/api/v2/usergroups", filter=f"name:eq:{group['name']}")] == [group["id"]]
    word = group["name"].split()[0].upper()
    found = v2_all(api, "/api/v2/usergroups", filter=f"name:search:{word}")
    assert group["id"] in {g["id"] for g in found}
    assert all(word.casefold() in g["name"].casefold() for g in found)
    chosen = v2_all(api, "/api/v2/usergroups", filter="membershipMethod:in:NOTSET|DYNAMIC_AUTOMATED")
    assert len(chosen) == sum(1 for g in dump["groups"] if g["membershipMethod"] in ("NOTSET", "DYNAMIC_AUTOMATED"))


@pytest.mark.parametrize("path,flt", [("/api/systemusers", "email:$like:x"), ("/api/systemusers", "email"),
                                      ("/api/v2/usergroups", "name:$eq:x"), ("/api/v2/usergroups", "name:like:x")])
def test_malformed_filters_are_400(api, path, flt):
    resp = api.get(path, params={"filter": flt})
    assert resp.status_code == 400 and resp.json()["message"]


# ---- graph reads -----------------------------------------------------------------------------------------


def test_associations_need_targets(api, dump):
    app = dump["apps"][0]
    assert api.get(f"/api/v2/applications/{app['_id']}/associations").status_code == 400
    assert api.get(f"/api/v2/applications/{app['_id']}/associations", params={"targets": "system"}).status_code == 400
    users = v2_all(api, f"/api/v2/applications/{app['_id']}/associations", targets="user")
    groups = v2_all(api, f"/api/v2/applications/{app['_id']}/associations", targets="user_group")
    assert [c["to"]["id"] for c in users] == app["users"] and {c["to"]["type"] for c in users} <= {"user"}
    assert [c["to"]["id"] for c in groups] == app["groups"]
    assert all(c["to"]["type"] == "user_group" for c in groups)


def test_app_users_carry_paths_direct_and_through_groups(api, dump):
    members = {g["id"]: g["members"] for g in dump["groups"]}
    for app in dump["apps"]:
        got = {o["id"]: o for o in v2_all(api, f"/api/v2/applications/{app['_id']}/users")}
        expected = set(app["users"]).union(*(members[g] for g in app["groups"]))
        assert set(got) == expected
        for uid, obj in got.items():
            assert obj["type"] == "user"
            direct = [p for p in obj["paths"] if len(p) == 1]
            via = [p for p in obj["paths"] if len(p) == 2]
            assert len(direct) == (uid in app["users"])
            assert sorted(p[0]["to"]["id"] for p in via) == sorted(g for g in app["groups"] if uid in members[g])
            assert all(p[-1]["to"] == {"attributes": None, "id": uid, "type": "user"} for p in obj["paths"])
        groups = v2_all(api, f"/api/v2/applications/{app['_id']}/usergroups")
        assert [g["id"] for g in groups] == app["groups"]
        assert all(g["paths"] == [[{"attributes": None, "to": {"attributes": None, "id": g["id"],
                                                              "type": "user_group"}}]] for g in groups)


def test_membership_and_memberof_agree_with_members(api, dump):
    group = max(dump["groups"], key=lambda g: len(g["members"]))
    membership = v2_all(api, f"/api/v2/usergroups/{group['id']}/membership")
    assert [m["id"] for m in membership] == group["members"]
    uid = group["members"][0]
    memberof = v2_all(api, f"/api/v2/users/{uid}/memberof")
    assert {m["id"] for m in memberof} == {g["id"] for g in dump["groups"] if uid in g["members"]}
    only = v2_all(api, f"/api/v2/users/{uid}/memberof", filter=f"object_id:eq:{group['id']}")
    assert [m["id"] for m in only] == [group["id"]]


def test_admins_list_uses_the_v1_envelope(api, dump):
    body = api.get("/api/users", params={"limit": 5}).json()
    assert body["totalCount"] == 14 and len(body["results"]) == 5
    assert [a["_id"] for a in v1_all(api, "/api/users")] == [a["_id"] for a in dump["admins"]]


@pytest.mark.parametrize("path", ["/api/systemusers/{id}", "/api/applications/{id}", "/api/v2/usergroups/{id}",
                                  "/api/v2/usergroups/{id}/members", "/api/v2/users/{id}/memberof",
                                  "/api/v2/applications/{id}/users"])
def test_unknown_ids_are_404_with_a_message(api, path):
    resp = api.get(path.format(id="0123456789abcdef01234567"))
    assert resp.status_code == 404 and resp.json()["message"]


# ---- auth and orgs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}])
def test_a_missing_or_wrong_key_is_401(server, headers):
    resp = httpx.get(server.url + "/api/systemusers", headers=headers)
    assert resp.status_code == 401
    assert {k: resp.json()[k] for k in ("error", "message")} == UNAUTHORIZED
    assert KEY not in resp.text


def test_sim_endpoints_need_no_key(server):
    assert httpx.get(server.url + "/_sim/stats").status_code == 200
    assert httpx.get(server.url + "/_sim/orgs").json()["multi_tenant"] is False


def test_single_tenant_accepts_only_its_own_org_id(server, api, dump):
    assert api.get("/api/systemusers", headers={"x-org-id": dump["org_id"]}).status_code == 200
    assert api.get("/api/systemusers", headers={"x-org-id": "0123456789abcdef01234567"}).status_code == 403
    assert api.get("/api/systemusers", headers={"x-org-id": "nope"}).status_code == 403


def test_multi_tenant_org_rules():
    state = build_state(api_key=KEY, seed=100, users=25, orgs=3)
    assert state.multi_tenant
    with SimulatorServer(state) as srv, httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}) as api:
        missing = api.get("/api/systemusers")
        assert missing.status_code == 401 and missing.json()["message"]
        assert api.get("/api/systemusers", headers={"x-org-id": "not-an-id"}).status_code == 400
        assert api.get("/api/systemusers", headers={"x-org-id": "0123456789abcdef01234567"}).status_code == 404
        seen = set()
        for org_id, tenant in state.orgs.items():
            body = api.get("/api/systemusers", params={"limit": 100}, headers={"x-org-id": org_id}).json()
            assert body["totalCount"] == 25
            ids = {u["_id"] for u in body["results"]}
            assert ids == set(tenant.users) and not ids & seen
            seen |= ids
        assert httpx.get(srv.url + "/api/systemusers", headers={"x-org-id": org_id}).status_code == 401
        assert httpx.get(srv.url + "/_sim/tenant").status_code == 400  # which org?
        assert httpx.get(srv.url + f"/_sim/tenant?org={org_id}").json()["org_id"] == org_id


# ---- writes: system users --------------------------------------------------------------------------------


def test_create_user_defaults_to_staged_and_checks_required_and_unique(fresh):
    resp = fresh.post("/api/systemusers", json={"email": "new.person@example.org", "username": "new.person",
                                               "firstname": "Zoë", "nonsense": 1})
    assert resp.status_code == 200
    user = resp.json()
    assert re.fullmatch(r"[0-9a-f]{24}", user["_id"]) and user["id"] == user["_id"]
    assert (user["state"], user["activated"], user["suspended"]) == ("STAGED", False, False)
    assert user["firstname"] == "Zoë" and "nonsense" not in user
    assert fresh.get(f"/api/systemusers/{user['_id']}").json() == user
    assert fresh.get("/api/systemusers").json()["totalCount"] == 41
    active = fresh.post("/api/systemusers", json={"email": "b@example.org", "username": "b", "state": "ACTIVATED"})
    assert (active.json()["state"], active.json()["activated"]) == ("ACTIVATED", True)
    for body in ({"username": "x"}, {"email": "x@example.org"}, {"email": "", "username": "x"},
                 {"email": "x@example.org", "username": "x", "state": "SUSPENDED"},
                 {"email": "x@example.org", "username": "x", "firstname": 5}, {"email": "nope", "username": "x"}):
        assert fresh.post("/api/systemusers", json=body).status_code == 400, body
    for body in ({"email": "NEW.Person@example.org", "username": "other"},
                 {"email": "other@example.org", "username": "New.Person"}):
        dup = fresh.post("/api/systemusers", json=body)
        assert dup.status_code == 409 and dup.json()["message"]
    assert fresh.post("/api/systemusers", content=b"{not json").status_code == 400


def test_suspend_and_unsuspend_fields_must_agree_when_both_are_sent(fresh):
    uid = fresh.post("/api/systemusers", json={"email": "s@example.org", "username": "s", "state": "ACTIVATED"}
                     ).json()["_id"]
    for body in ({"suspended": True, "state": "ACTIVATED"}, {"suspended": False, "state": "SUSPENDED"},
                 {"suspended": False, "state": "STAGED"}):
        assert fresh.put(f"/api/systemusers/{uid}", json=body).status_code == 400, body
    suspended = fresh.put(f"/api/systemusers/{uid}", json={"suspended": True, "state": "SUSPENDED"})
    assert suspended.status_code == 200
    assert (suspended.json()["state"], suspended.json()["suspended"]) == ("SUSPENDED", True)
    back = fresh.put(f"/api/systemusers/{uid}", json={"suspended": False, "state": "ACTIVATED", "jobTitle": "CTO"})
    assert (back.json()["state"], back.json()["suspended"], back.json()["jobTitle"]) == ("ACTIVATED", False, "CTO")
    assert fresh.put("/api/systemusers/0123456789abcdef01234567", json={"jobTitle": "x"}).status_code == 404


def test_profile_update_keeps_email_unique(fresh):
    users = fresh.get("/api/systemusers", params={"limit": 2}).json()["results"]
    resp = fresh.put(f"/api/systemusers/{users[0]['_id']}", json={"email": users[1]["email"].upper()})
    assert resp.status_code == 409
    same = fresh.put(f"/api/systemusers/{users[0]['_id']}", json={"email": users[0]["email"], "department": None})
    assert same.status_code == 200 and same.json()["department"] is None


def test_activate_only_a_staged_user(fresh):
    uid = fresh.post("/api/systemusers", json={"email": "a@example.org", "username": "a"}).json()["_id"]
    resp = fresh.post(f"/api/systemusers/{uid}/state/activate", json={})
    assert resp.status_code == 200
    user = fresh.get(f"/api/systemusers/{uid}").json()
    assert (user["state"], user["activated"]) == ("ACTIVATED", True)
    again = fresh.post(f"/api/systemusers/{uid}/state/activate", json={})
    assert again.status_code == 400 and again.json()["message"]


def test_delete_user_answers_the_record_and_drops_its_edges(fresh):
    dump = fresh.dump()
    uid = next(m for g in dump["groups"] for m in g["members"])
    group = next(g for g in dump["groups"] if uid in g["members"])
    app = dump["apps"][0]
    fresh.post(f"/api/v2/applications/{app['_id']}/associations", json={"op": "add", "type": "user", "id": uid})
    resp = fresh.delete(f"/api/systemusers/{uid}")
    assert resp.status_code == 200 and resp.json()["_id"] == uid
    assert fresh.get(f"/api/systemusers/{uid}").status_code == 404
    assert fresh.delete(f"/api/systemusers/{uid}").status_code == 404
    after = fresh.dump()
    assert all(uid not in g["members"] for g in after["groups"])
    assert all(uid not in a["users"] for a in after["apps"])
    members = v2_all(fresh, f"/api/v2/usergroups/{group['id']}/members")
    assert uid not in {m["to"]["id"] for m in members}


def test_admin_role_change(fresh):
    dump = fresh.dump()
    admin = dump["admins"][0]
    read_only = next(r for r in dump["roles"] if r["name"] == "Read Only")
    resp = fresh.put(f"/api/users/{admin['_id']}", json={"roleName": "read ONLY"})
    assert resp.status_code == 200
    assert (resp.json()["roleName"], resp.json()["roleNames"], resp.json()["role"]) == \
        ("Read Only", ["Read Only"], read_only["id"])
    listed = {a["_id"]: a for a in v1_all(fresh, "/api/users")}
    assert listed[admin["_id"]]["roleName"] == "Read Only"
    assert fresh.put(f"/api/users/{admin['_id']}", json={"roleName": "Overlord"}).status_code == 400
    assert fresh.put("/api/users/0123456789abcdef01234567", json={"roleName": "Manager"}).status_code == 404


# ---- writes: groups, members, associations ---------------------------------------------------------------


def test_group_create_update_delete(fresh):
    created = fresh.post("/api/v2/usergroups", json={"name": "Night Shift", "description": "owls"})
    assert created.status_code == 201
    group = created.json()
    assert group["type"] == "user_group" and group["name"] == "Night Shift"
    assert fresh.post("/api/v2/usergroups", json={"description": "no name"}).status_code == 400
    assert fresh.post("/api/v2/usergroups", json={"name": "night shift"}).status_code == 409
    assert fresh.post("/api/v2/usergroups", json={"name": "x", "membershipMethod": "SOMETIMES"}).status_code == 400
    updated = fresh.put(f"/api/v2/usergroups/{group['id']}", json={"name": "Day Shift", "email": "day@x.org"})
    assert updated.status_code == 200 and updated.json()["email"] == "day@x.org"
    assert fresh.put(f"/api/v2/usergroups/{group['id']}", json={"email": "no-name@x.org"}).status_code == 400
    app = fresh.dump()["apps"][0]
    fresh.post(f"/api/v2/applications/{app['_id']}/associations",
               json={"op": "add", "type": "user_group", "id": group["id"]})
    deleted = fresh.delete(f"/api/v2/usergroups/{group['id']}")
    assert deleted.status_code == 200 and deleted.json()["name"] == "Day Shift"
    assert fresh.get(f"/api/v2/usergroups/{group['id']}").status_code == 404
    assert group["id"] not in next(a for a in fresh.dump()["apps"] if a["_id"] == app["_id"])["groups"]


def test_member_changes_follow_jumpclouds_status_codes(fresh):
    dump = fresh.dump()
    group = dump["groups"][0]
    outsider = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    path = f"/api/v2/usergroups/{group['id']}/members"
    assert fresh.post(path, json={"op": "add", "type": "user", "id": outsider}).status_code == 204
    assert outsider in {m["to"]["id"] for m in v2_all(fresh, path)}
    assert fresh.post(path, json={"op": "add", "type": "user", "id": outsider}).status_code == 409
    assert fresh.post(path, json={"op": "remove", "type": "user", "id": outsider}).status_code == 204
    assert fresh.post(path, json={"op": "remove", "type": "user", "id": outsider}).status_code == 404
    assert fresh.post(path, json={"op": "add", "type": "user", "id": "0123456789abcdef01234567"}).status_code == 404
    assert fresh.post(path, json={"op": "update", "type": "user", "id": outsider}).status_code == 400
    assert fresh.post(path, json={"op": "add", "type": "user_group", "id": outsider}).status_code == 400
    assert fresh.post(path, json={"op": "add", "type": "user"}).status_code == 400
    unknown = "/api/v2/usergroups/0123456789abcdef01234567/members"
    assert fresh.post(unknown, json={"op": "add", "type": "user", "id": outsider}).status_code == 404


def test_association_changes_follow_jumpclouds_status_codes(fresh):
    dump = fresh.dump()
    app = dump["apps"][1]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in app["users"])
    group = next(g["id"] for g in dump["groups"] if g["id"] not in app["groups"])
    path = f"/api/v2/applications/{app['_id']}/associations"
    for kind, target in (("user", user), ("user_group", group)):
        assert fresh.post(path, json={"op": "add", "type": kind, "id": target}).status_code == 204
        listed = v2_all(fresh, path, targets=kind)
        assert listed[-1]["to"] == {"attributes": None, "id": target, "type": kind}
        assert fresh.post(path, json={"op": "add", "type": kind, "id": target}).status_code == 409
        assert fresh.post(path, json={"op": "remove", "type": kind, "id": target}).status_code == 204
        assert fresh.post(path, json={"op": "remove", "type": kind, "id": target}).status_code == 404
    assert fresh.post(path, json={"op": "add", "type": "system", "id": user}).status_code == 400
    assert fresh.post(path, json={"op": "add", "type": "user_group", "id": user}).status_code == 404


def test_group_binding_gives_members_access_through_the_group(fresh):
    dump = fresh.dump()
    app = dump["apps"][2]
    group = fresh.post("/api/v2/usergroups", json={"name": "Binders"}).json()
    chosen = [u["_id"] for u in dump["users"][:3]]
    for uid in chosen:
        fresh.post(f"/api/v2/usergroups/{group['id']}/members", json={"op": "add", "type": "user", "id": uid})
    before = {o["id"] for o in v2_all(fresh, f"/api/v2/applications/{app['_id']}/users")}
    fresh.post(f"/api/v2/applications/{app['_id']}/associations",
               json={"op": "add", "type": "user_group", "id": group["id"]})
    after = {o["id"]: o for o in v2_all(fresh, f"/api/v2/applications/{app['_id']}/users")}
    assert set(after) == before | set(chosen)
    for uid in chosen:
        assert [group["id"], uid] in [[c["to"]["id"] for c in p] for p in after[uid]["paths"]]


# ---- /_sim -----------------------------------------------------------------------------------------------


def test_sim_admins_and_applications(fresh):
    url = str(fresh.base_url)
    created = httpx.post(url + "/_sim/admins", json={"email": "Boss@Example.org", "firstname": "Bo",
                                                     "roleName": "help desk"})
    assert created.status_code == 201
    admin = created.json()
    assert admin["roleName"] == "Help Desk" and admin["roleNames"] == ["Help Desk"] and admin["suspended"] is False
    assert httpx.post(url + "/_sim/admins", json={"email": "boss@example.org"}).status_code == 409
    assert httpx.post(url + "/_sim/admins", json={"firstname": "no email"}).status_code == 400
    assert admin["_id"] in {a["_id"] for a in v1_all(fresh, "/api/users")}
    assert httpx.delete(url + f"/_sim/admins/{admin['_id']}").json()["_id"] == admin["_id"]
    assert admin["_id"] not in {a["_id"] for a in v1_all(fresh, "/api/users")}
    assert httpx.delete(url + f"/_sim/admins/{admin['_id']}").status_code == 404

    role = httpx.post(url + "/_sim/roles", json={"name": "Auditor"})
    assert role.status_code == 201
    assert fresh.put(f"/api/users/{fresh.dump()['admins'][0]['_id']}", json={"roleName": "auditor"}).json()[
        "roleName"] == "Auditor"

    app = httpx.post(url + "/_sim/applications", json={"name": "slack", "displayLabel": "Slack (Ops)"}).json()
    assert fresh.get(f"/api/applications/{app['_id']}").json()["displayLabel"] == "Slack (Ops)"
    assert fresh.get("/api/applications").json()["totalCount"] == 4
    assert httpx.delete(url + f"/_sim/applications/{app['_id']}").status_code == 200
    assert fresh.get(f"/api/applications/{app['_id']}").status_code == 404


def test_tenant_dump_shape(dump):
    assert set(dump) >= {"org_id", "users", "admins", "groups", "apps"}
    assert all("members" in g for g in dump["groups"])
    assert all("users" in a and "groups" in a for a in dump["apps"])
    assert len(dump["users"]) == 230


def test_sim_refuses_non_loopback_clients():
    """The gate reads the client address; a request from elsewhere is refused on /_sim only."""
    import asyncio

    from simulator.app import create_app

    tenant = generate_tenant(TenantSpec(seed=1, users=3))
    app = create_app(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY))

    async def call(path: str) -> int:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return (await client.get(path, headers={"x-api-key": KEY})).status_code

    assert asyncio.run(call("/_sim/stats")) == 403
    assert asyncio.run(call("/api/systemusers")) == 200


# ---- stats -----------------------------------------------------------------------------------------------


def test_stats_count_by_route_template_and_status():
    with start(TenantSpec(seed=2, users=30, groups=3)) as srv:
        url = srv.url
        with httpx.Client(base_url=url, headers={"x-api-key": KEY}) as api:
            users = api.get("/api/systemusers").json()["results"]
            api.get(f"/api/systemusers/{users[0]['_id']}")
            api.get(f"/api/systemusers/{users[1]['_id']}")
            api.get("/api/systemusers", params={"limit": 500})
            httpx.get(url + "/api/v2/usergroups")
            httpx.get(url + "/_sim/tenant")
        stats = httpx.get(url + "/_sim/stats").json()
        assert stats["requests"] == 5
        assert stats["by_route"] == {"GET /api/systemusers": 2, "GET /api/systemusers/{id}": 2,
                                     "GET /api/v2/usergroups": 1}
        assert stats["by_status"] == {"200": 3, "400": 1, "401": 1}
        assert stats["max_in_flight"] == 1 and stats["in_flight"] == 0
        assert 1 <= stats["max_per_second"] <= 5  # 5 requests, within one or two seconds of the clock
        reset = httpx.post(url + "/_sim/stats/reset").json()
        assert reset["requests"] == 0 and reset["by_route"] == {} and reset["max_per_second"] == 0


def test_a_request_is_counted_before_its_client_can_read_the_answer():
    """A client that reads the stats right after its last response must find it counted (it was counted after
    the body went out, so a fast client could read one too few)."""
    import asyncio

    from simulator.app import create_app

    tenant = generate_tenant(TenantSpec(seed=1, users=3))
    state = SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)
    app = create_app(state)
    seen_at_answer: list[int] = []

    async def send(message):
        if message["type"] == "http.response.start":
            seen_at_answer.append(state.stats.by_route["GET /api/systemusers"])

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/api/systemusers", "raw_path": b"/api/systemusers",
             "query_string": b"", "headers": [(b"x-api-key", KEY.encode())], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 80), "scheme": "http", "http_version": "1.1", "root_path": "",
             "asgi": {"version": "3.0"}}
    asyncio.run(app(scope, receive, send))
    assert seen_at_answer == [1]
    assert state.stats.requests == 1 and state.stats.in_flight == 0


def test_max_in_flight_sees_concurrent_requests():
    """Six requests released together, each held a second and a half: however busy the machine, they overlap."""
    with start(TenantSpec(seed=2, users=30), faults=Faults(latency_ms=1500)) as srv:
        ready = threading.Barrier(6)

        def get(_: int) -> int:
            with httpx.Client(headers={"x-api-key": KEY}) as client:
                ready.wait()
                return client.get(srv.url + "/api/systemusers").status_code

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(get, range(6)))
        assert codes == [200] * 6
        stats = httpx.get(srv.url + "/_sim/stats").json()
        assert stats["max_in_flight"] >= 4 and stats["requests"] == 6


def test_small_responses_are_not_held_back_by_nagle(api):
    """Without TCP_NODELAY on accepted sockets a small response waits for a delayed ACK; benchmarks at
    20 ms of simulated latency would measure the stack, not the client."""
    api.get("/api/systemusers")
    took = []
    for _ in range(20):
        started = time.perf_counter()
        api.get("/api/systemusers", params={"limit": 5})
        took.append(time.perf_counter() - started)
    assert statistics.median(took) < 0.035  # a delayed ACK holds every response back by about 40 ms


# ---- command line --------------------------------------------------------------------------------------


def test_api_key_comes_from_argument_file_or_environment(tmp_path, monkeypatch):
    from simulator.cli import SimulatorConfigError, resolve_api_key

    monkeypatch.delenv("JUMPSYNC_SIM_API_KEY", raising=False)
    with pytest.raises(SimulatorConfigError, match="JUMPSYNC_SIM_API_KEY"):
        resolve_api_key()
    monkeypatch.setenv("JUMPSYNC_SIM_API_KEY", "from-env")
    assert resolve_api_key() == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert resolve_api_key(api_key_file=key_file) == "from-file"
    assert resolve_api_key("given", key_file) == "given"
    (tmp_path / "empty").write_text("")
    with pytest.raises(SimulatorConfigError):
        resolve_api_key(api_key_file=tmp_path / "empty")
    with pytest.raises(SimulatorConfigError) as missing:
        resolve_api_key(api_key_file=tmp_path / "absent")
    assert "absent" in str(missing.value)


def test_serve_refuses_a_non_loopback_address(monkeypatch):
    from simulator.cli import SimulatorConfigError, serve

    monkeypatch.setenv("JUMPSYNC_SIM_API_KEY", "k")
    with pytest.raises(SimulatorConfigError, match="loopback"):
        serve(host="0.0.0.0", port=0, users=5)


def test_python_m_simulator_serves_without_printing_the_key(tmp_path):
    import os
    import subprocess
    import sys

    secret = "very-secret-simulator-key-77"
    env = {**os.environ, "JUMPSYNC_SIM_API_KEY": secret}
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--port", "0", "--users", "12", "--orgs", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any("listening on" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = re.search(r"listening on (\S+)", lines[-1]).group(1)
        org = re.search(r"org ([0-9a-f]{24})", "".join(lines)).group(1)
        resp = httpx.get(url + "/api/systemusers", headers={"x-api-key": secret, "x-org-id": org})
        assert resp.json()["totalCount"] == 12
        assert secret not in "".join(lines)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert secret not in out
