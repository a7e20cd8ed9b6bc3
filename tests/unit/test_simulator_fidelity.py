"""Where public JumpCloud clients showed the real service behaving otherwise than the simulator did (issue 26):
each test holds one row of simulator/README.md's fidelity table, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "sim-fidelity-key-81d0"
SPEC = TenantSpec(seed=26, users=60, admins=4, groups=8, apps=4, avg_members_per_group=6, users_per_app=8,
                  groups_per_app=3)


@pytest.fixture
def sim():
    """A simulator of its own (the tests write), and a client on it."""
    tenant = generate_tenant(SPEC)
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=10) as client:
            client.dump = lambda: httpx.get(srv.url + "/_sim/tenant").json()  # type: ignore[attr-defined]
            yield client


def _user(sim: httpx.Client, name: str, **fields) -> dict:
    resp = sim.post("/api/systemusers", json={"username": name, "email": f"{name}@example.org", **fields})
    assert resp.status_code == 200, resp.text
    return resp.json()


# ---- row 1: integer booleans -------------------------------------------------------------------------------


def test_integer_booleans_are_taken_on_write(sim):
    user = _user(sim, "intbool", allow_public_key=1, sudo=0, passwordless_sudo=1)
    assert (user["allow_public_key"], user["sudo"], user["passwordless_sudo"]) == (True, False, True)
    changed = sim.put(f"/api/systemusers/{user['_id']}", json={"allow_public_key": 0, "ldap_binding_user": 1})
    assert changed.status_code == 200
    assert (changed.json()["allow_public_key"], changed.json()["ldap_binding_user"]) == (False, True)
    for bad in (2, -1, "true", 1.5, None):
        resp = sim.put(f"/api/systemusers/{user['_id']}", json={"sudo": bad})
        assert resp.status_code == 400, bad


# ---- row 4: v2 filter operators on v1 lists ----------------------------------------------------------------


def test_v1_lists_take_the_v2_filter_form(sim):
    target = sim.dump()["users"][5]
    for flt in (f"username:eq:{target['username']}", f"username:$eq:{target['username']}"):
        body = sim.get("/api/systemusers", params={"filter": flt}).json()
        assert [u["_id"] for u in body["results"]] == [target["_id"]] and body["totalCount"] == 1, flt
    bad = sim.get("/api/systemusers", params={"filter": "username:like:x"})
    assert bad.status_code == 400 and bad.json()["message"].startswith("Bad Request: ")


# ---- row 5: suspend by one flag ----------------------------------------------------------------------------


def test_suspended_or_state_alone_suspends_and_keeps_the_record_consistent(sim):
    uid = _user(sim, "flag", state="ACTIVATED")["_id"]
    path = f"/api/systemusers/{uid}"
    suspended = sim.put(path, json={"suspended": True}).json()
    assert (suspended["suspended"], suspended["state"]) == (True, "SUSPENDED")
    back = sim.put(path, json={"suspended": False}).json()
    assert (back["suspended"], back["state"], back["activated"]) == (False, "ACTIVATED", True)
    by_state = sim.put(path, json={"state": "SUSPENDED"}).json()
    assert (by_state["suspended"], by_state["state"]) == (True, "SUSPENDED")
    assert sim.put(path, json={"state": "ACTIVATED"}).json()["suspended"] is False
    staged = _user(sim, "staged", state="STAGED")["_id"]
    still = sim.put(f"/api/systemusers/{staged}", json={"suspended": False}).json()
    assert (still["suspended"], still["state"]) == (False, "STAGED")
    for body in ({"suspended": True, "state": "ACTIVATED"}, {"suspended": False, "state": "SUSPENDED"},
                 {"state": "STAGED"}, {"suspended": "yes"}):
        assert sim.put(path, json=body).status_code == 400, body


# ---- row 2: every group -------------------------------------------------------------------------------------


def test_groups_lists_the_user_groups_as_group_objects(sim):
    groups = sim.dump()["groups"]
    resp = sim.get("/api/v2/groups", params={"limit": 100})
    assert resp.status_code == 200 and resp.headers["x-total-count"] == str(len(groups))
    assert resp.json() == [{k: g[k] for k in ("attributes", "description", "email", "id", "name", "type")}
                           for g in groups]
    named = sim.get("/api/v2/groups", params={"filter": f"name:eq:{groups[2]['name']}"}).json()
    assert [g["id"] for g in named] == [groups[2]["id"]]
    by_name = sim.get("/api/v2/groups", params={"sort": "-name", "limit": 3, "fields": "name"}).json()
    assert [g["name"] for g in by_name] == sorted((g["name"] for g in groups), reverse=True)[:3]


# ---- row 3: the search endpoint -----------------------------------------------------------------------------


def test_search_systemusers_takes_filter_searchfilter_fields_limit_skip(sim):
    users = sim.dump()["users"]
    dept = next(u["department"] for u in users if u.get("department"))
    in_dept = [u["_id"] for u in users if u.get("department") == dept]
    found = sim.post("/api/search/systemusers", json={"filter": [{"department": dept}], "limit": 100}).json()
    assert [u["_id"] for u in found["results"]] == in_dept and found["totalCount"] == len(in_dept)
    either = sim.post("/api/search/systemusers", json={
        "filter": {"or": [{"username": users[0]["username"]}, {"username": users[1]["username"]}]},
        "fields": "email username"}).json()
    assert [u["_id"] for u in either["results"]] == [users[0]["_id"], users[1]["_id"]]
    assert set(either["results"][0]) == {"_id", "id", "email", "username"}
    both = sim.post("/api/search/systemusers", json={"filter": {"and": [{"username": users[0]["username"]},
                                                                       {"email": users[1]["email"]}]}}).json()
    assert both == {"totalCount": 0, "results": []}
    term = users[3]["email"].split("@")[1].upper()
    text = sim.post("/api/search/systemusers", json={"searchFilter": {"searchTerm": [term, "zzz-none"],
                                                                      "fields": ["email"]}, "limit": 100}).json()
    assert text["totalCount"] == sum(1 for u in users if term.lower() in (u.get("email") or "").lower())
    paged = sim.post("/api/search/systemusers", params={"limit": 5}, json={"skip": 10}).json()
    assert [u["_id"] for u in paged["results"]] == [u["_id"] for u in users[10:15]]
    assert paged["totalCount"] == len(users)
    for body in ({"filter": {"xor": []}}, {"filter": "department:eq:x"}, {"searchFilter": {"searchTerm": "x"}},
                 {"limit": 101}, {"limit": "ten"}):
        assert sim.post("/api/search/systemusers", json=body).status_code == 400, body


# ---- rows 6 and 7: user group PUT replaces; sort=id refused -------------------------------------------------


def test_usergroup_put_replaces_the_group(sim):
    group = sim.post("/api/v2/usergroups", json={"name": "Full", "description": "d", "email": "full@example.org",
                                                 "attributes": {"sudo": {"enabled": True}},
                                                 "membershipMethod": "STATIC"}).json()
    replaced = sim.put(f"/api/v2/usergroups/{group['id']}", json={"name": "Full", "description": "new"})
    assert replaced.status_code == 200
    assert replaced.json() == {**group, "description": "new", "email": "", "attributes": None,
                               "membershipMethod": "NOTSET"}
    assert sim.get(f"/api/v2/usergroups/{group['id']}").json() == replaced.json()
    echoed = sim.put(f"/api/v2/usergroups/{group['id']}", json={**replaced.json(), "email": "e@example.org"})
    assert echoed.json() == {**replaced.json(), "email": "e@example.org"}  # its own record echoed back is taken
    assert sim.put(f"/api/v2/usergroups/{group['id']}", json={"description": "no name"}).status_code == 400


def test_usergroups_refuse_sort_by_id(sim):
    for sort in ("id", "-id", "name,id"):
        resp = sim.get("/api/v2/usergroups", params={"sort": sort})
        assert resp.status_code == 400 and resp.json()["message"] == "invalid sort field: id", sort
    names = [g["name"] for g in sim.get("/api/v2/usergroups", params={"sort": "name", "limit": 100}).json()]
    assert names == sorted(names)


# ---- row 8: trailing slashes --------------------------------------------------------------------------------


def test_a_trailing_slash_is_answered_not_redirected(sim):
    listed = sim.get("/api/v2/usergroups/")
    assert listed.status_code == 200 and listed.json() == sim.get("/api/v2/usergroups").json()
    assert listed.headers["x-total-count"] == str(len(sim.dump()["groups"]))
    created = sim.post("/api/systemusers/", json={"username": "slash", "email": "slash@example.org"})
    assert created.status_code == 200 and created.json()["username"] == "slash"
    assert sim.get(f"/api/systemusers/{created.json()['_id']}/").json()["username"] == "slash"
    assert sim.get("/api/nothing-here/").status_code == 404
    stats = httpx.get(str(sim.base_url) + "/_sim/stats").json()
    assert "GET /api/v2/usergroups" in str(stats) and "/api/v2/usergroups/" not in str(stats)


# ---- row 9: several targets in one call ---------------------------------------------------------------------


def test_associations_take_comma_joined_targets(sim):
    app = next(a for a in sim.dump()["apps"] if a["users"] and a["groups"])
    path = f"/api/v2/applications/{app['_id']}/associations"
    for params in ({"targets": "user,user_group"}, {"targets": ["user", "user_group"]}):
        resp = sim.get(path, params=params)
        assert resp.status_code == 200
        expected = [("user", u) for u in app["users"]] + [("user_group", g) for g in app["groups"]]
        assert [(c["to"]["type"], c["to"]["id"]) for c in resp.json()] == expected[:10]
        assert resp.headers["x-total-count"] == str(len(expected))
    assert sim.get(path, params={"targets": "user,system"}).status_code == 400
    group = app["groups"][0]
    mixed = sim.get(f"/api/v2/usergroups/{group}/associations", params={"targets": "system,application"})
    bound = [a["_id"] for a in sim.dump()["apps"] if group in a["groups"]]
    assert [(c["to"]["type"], c["to"]["id"]) for c in mixed.json()] == [("application", a) for a in bound]


# ---- row 10: SCIM apps in multi-tenant mode -----------------------------------------------------------------


def test_multi_tenant_orgs_have_scim_apps_as_single_tenant_orgs_do():
    """A guard (the rule held at this commit already): the generator's third of SCIM apps is the same whether
    the org is served alone, as one of several, or added at runtime."""
    from simulator.cli import build_state

    state = build_state(api_key=KEY, seed=3, orgs=6, apps=3, users=10, groups=2)
    generated = list(state.orgs)
    with SimulatorServer(state) as srv:
        srv_url = srv.url
        added = [httpx.post(srv_url + "/_sim/orgs", json={"apps": 3, "users": 5}).json()["org_id"] for _ in range(3)]
        kinds = []
        for org in [*generated, *added]:
            apps = httpx.get(srv_url + "/api/v2/applications", headers={"x-api-key": KEY, "x-org-id": org}).json()
            kinds += [(a.get("provision") or {}).get("type") for a in apps]
    assert len(kinds) == 27 and 5 <= kinds.count("scim") <= 14


# ---- row 11: directories ------------------------------------------------------------------------------------


def test_directories_are_listed(sim):
    resp = sim.get("/api/v2/directories")
    assert resp.status_code == 200 and resp.json() == [] and resp.headers["x-total-count"] == "0"
    assert sim.get("/api/v2/directories", params={"limit": 101}).status_code == 400


def test_jumpsyncs_group_listing_sorts_by_a_field_the_service_takes(sim):
    """jumpsync's own group listing pages sorted by `name` (unique per org), not by the refused `id`."""
    import asyncio

    from connector.groups import GroupSyncer
    from jumpcloud import JumpCloudClient

    async def listed() -> list[str]:
        client = JumpCloudClient(base_url=str(sim.base_url), api_key=KEY)
        try:
            return [g.id async for page in GroupSyncer(client).resources() for g in page]
        finally:
            await client.aclose()

    groups = sim.dump()["groups"]
    assert sorted(asyncio.run(listed())) == sorted(g["id"] for g in groups)
    stats = httpx.get(str(sim.base_url) + "/_sim/stats").json()
    assert set(stats["by_status"]) == {"200"} and stats["by_route"]["GET /api/v2/usergroups"] >= 1
