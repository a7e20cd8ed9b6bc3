"""The simulator's MSP org listing (`GET /api/organizations`) and the /_sim endpoints that add, rename, remove and
restore orgs at runtime, over real HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from simulator.admin import SimulatorAdmin
from simulator.cli import build_state
from simulator.generator import org_display_name
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant
from tests.support.spec import check, check_op, error_schema

KEY = "orgs-test-key-81d0"
ORGS = "/api/organizations"
SMALL = {"users": 3, "admins": 1, "groups": 1, "apps": 1}
NAME = re.compile(r"^[A-Z][a-z]+ \d+$")  # "Acme 3"


class Admin(SimulatorAdmin):
    def __init__(self, url: str) -> None:
        self.url = url


def start(orgs: int, **sizes) -> SimulatorServer:
    return SimulatorServer(build_state(api_key=KEY, seed=40, orgs=orgs, multi_tenant=True,
                                       **{**SMALL, **sizes})).start()


@pytest.fixture
def msp():
    """A multi-tenant simulator of three orgs, its API client (key, no x-org-id) and its /_sim admin."""
    with start(3) as srv, httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=10) as api:
        api.admin = Admin(srv.url)  # type: ignore[attr-defined]
        api.state = srv.state  # type: ignore[attr-defined]
        yield api


def listed(api: httpx.Client, **params) -> dict:
    resp = api.get(ORGS, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def names(api: httpx.Client) -> dict[str, str]:
    return {o["_id"]: o["displayName"] for o in listed(api, limit=100)["results"]}


# ---- the listing ---------------------------------------------------------------------------------------------


def test_msp_key_lists_its_orgs_without_x_org_id(msp):
    body = listed(msp)
    expected = sorted(msp.state.orgs)
    assert body == {"totalCount": 3, "results": [
        {"_id": oid, "displayName": msp.state.orgs[oid].display_name, "logoUrl": ""} for oid in expected]}
    assert all(o["displayName"] for o in body["results"])
    # the other /api paths still need x-org-id
    assert msp.get("/api/systemusers").status_code == 401


@pytest.mark.parametrize("org_header", ["first", "0123456789abcdef01234567", "not-an-id"])
def test_x_org_id_is_ignored_by_the_listing(msp, org_header):
    header = next(iter(msp.state.orgs)) if org_header == "first" else org_header
    resp = msp.get(ORGS, headers={"x-org-id": header})
    assert resp.status_code == 200 and resp.json()["totalCount"] == 3


def test_paging_25_orgs_by_10():
    with start(25, users=1, admins=0, groups=0, apps=0) as srv, \
            httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}) as api:
        pages = [listed(api, skip=skip, limit=10) for skip in (0, 10, 20, 30)]
        assert [p["totalCount"] for p in pages] == [25] * 4
        assert [len(p["results"]) for p in pages] == [10, 10, 5, 0]
        ids = [o["_id"] for p in pages for o in p["results"]]
        assert ids == sorted(srv.state.orgs) and len(set(ids)) == 25
        assert listed(api) == pages[0]  # limit defaults to 10, order to _id
        assert [o["_id"] for o in listed(api, skip=5, limit=3)["results"]] == ids[5:8]


def test_limit_and_skip_are_checked_like_the_other_v1_listings(msp):
    org = next(iter(msp.state.orgs))
    for params in ({"limit": 101}, {"limit": 1000}, {"skip": -1}, {"limit": "ten"}):
        resp = msp.get(ORGS, params=params)
        other = msp.get("/api/systemusers", params=params, headers={"x-org-id": org})
        assert resp.status_code == other.status_code == 400
        assert resp.json() == other.json()
        check("v1", error_schema("v1", 400), resp.json())
    assert listed(msp, limit=100)["totalCount"] == 3
    assert listed(msp, limit=0) == {"totalCount": 3, "results": []}


def test_sort_fields_and_filter(msp):
    msp.admin.rename_org(sorted(msp.state.orgs)[0], "zulu")
    by_name = listed(msp, sort="-displayName")["results"]
    assert [o["displayName"] for o in by_name] == sorted((o["displayName"] for o in by_name), reverse=True)
    assert by_name[0]["displayName"] == "zulu"  # code-point order: lowercase after capitals
    assert [o["_id"] for o in listed(msp, sort="-_id")["results"]] == sorted(msp.state.orgs, reverse=True)
    slim = listed(msp, fields="displayName")["results"]
    assert all(set(o) == {"_id", "displayName"} for o in slim)
    assert [o["displayName"] for o in listed(msp, filter="displayName:$eq:zulu")["results"]] == ["zulu"]


def test_removed_org_is_not_listed_until_restored(msp):
    gone = sorted(msp.state.orgs)[1]
    msp.admin.remove_org(gone)
    body = listed(msp)
    assert body["totalCount"] == 2 and gone not in {o["_id"] for o in body["results"]}
    assert msp.get("/api/systemusers", headers={"x-org-id": gone}).status_code == 404
    assert gone in msp.admin.orgs()["removed"]
    msp.admin.restore_org(gone)
    assert [o["_id"] for o in listed(msp)["results"]] == sorted(msp.state.orgs)


def test_a_wrong_or_missing_key_is_401(msp):
    url = str(msp.base_url) + ORGS
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": "wrong", "x-org-id": next(iter(msp.state.orgs))}):
        resp = httpx.get(url, headers=headers)
        assert resp.status_code == 401 and resp.json()["error"] == "Unauthorized"
        check("v1", error_schema("v1", 401), resp.json())


def test_single_tenant_lists_its_one_org():
    tenant = generate_tenant(TenantSpec(seed=5, users=3, admins=1, groups=1, apps=1))
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv, \
            httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}) as api:
        assert listed(api) == {"totalCount": 1, "results": [
            {"_id": tenant.org_id, "displayName": tenant.display_name, "logoUrl": ""}]}
        # the usual single-tenant org rules: its own id is fine, another is 403, a removed org is 404
        assert api.get(ORGS, headers={"x-org-id": tenant.org_id}).status_code == 200
        assert api.get(ORGS, headers={"x-org-id": "0123456789abcdef01234567"}).status_code == 403
        admin = Admin(srv.url)
        assert admin.orgs()["names"] == {tenant.org_id: tenant.display_name}
        resp = httpx.post(srv.url + "/_sim/orgs", json={})
        assert resp.status_code == 400 and "multi-tenant" in resp.json()["message"]
        admin.rename_org(tenant.org_id, "Solo Org")
        assert listed(api)["results"][0]["displayName"] == "Solo Org"
        admin.remove_org(tenant.org_id)
        assert api.get(ORGS).status_code == 404


def test_the_listing_conforms_to_the_spec(msp):
    body = check_op("v1", "/organizations", "get", msp.get(ORGS, params={"limit": 100}))
    assert set(body) == {"totalCount", "results"} and len(body["results"]) == 3
    check_op("v1", "/organizations", "get", msp.get(ORGS, params={"skip": 3}))


def test_faults_and_stats_apply_to_the_listing(msp):
    msp.admin.set_faults({"rules": [
        {"path": "^/api/organizations$", "status": 503, "times": 1},
        {"path": "^/api/organizations$", "mutate": {"remove_users": 1}, "times": 1}]})
    assert msp.get(ORGS).status_code == 503
    assert msp.get(ORGS).status_code == 200  # the mutation has no org to act on: skipped, the listing served
    skipped = msp.admin.sim("GET", "/_sim/events", params={"kind": "mutate_skipped"}).json()["events"]
    assert len(skipped) == 1 and skipped[0]["request"] == f"GET {ORGS}"
    stats = msp.admin.stats()
    assert stats["by_route"] == {f"GET {ORGS}": 2} and stats["by_fault"] == {"rule": 1}


# ---- adding and renaming orgs --------------------------------------------------------------------------------


def test_added_org_is_listed_and_its_data_reachable(msp):
    before = msp.admin.orgs()
    added = msp.admin.add_org(seed=900, users=7, admins=2, groups=3, apps=1, display_name="New Client")
    org = added["org_id"]
    assert added == {"org_id": org, "display_name": "New Client"} and org not in before["orgs"]
    after = msp.admin.orgs()
    assert after["orgs"] == [*before["orgs"], org] and after["names"][org] == "New Client"
    assert {"_id": org, "displayName": "New Client", "logoUrl": ""} in listed(msp)["results"]
    assert listed(msp)["totalCount"] == 4
    users = msp.get("/api/systemusers", params={"limit": 100}, headers={"x-org-id": org}).json()
    assert users["totalCount"] == 7 and {u["organization"] for u in users["results"]} == {org}
    tenant = msp.state.orgs[org]
    assert tenant.insights.faults is msp.state.faults.insights  # wired like the first orgs
    assert (len(tenant.admins), len(tenant.groups), len(tenant.apps)) == (2, 3, 1)
    event = msp.admin.sim("GET", "/_sim/events", params={"kind": "org_added"}).json()["events"]
    assert [(e["org"], e["display_name"], e["by"]) for e in event] == [(org, "New Client", "api")]


def test_added_org_defaults_and_a_chosen_id(msp):
    default = msp.admin.add_org()
    tenant = msp.state.orgs[default["org_id"]]
    assert tenant.seed == 43  # one past the highest seed held (40, 41, 42)
    assert default["display_name"] == tenant.display_name and NAME.match(tenant.display_name)
    assert tenant.display_name.endswith(" 43")
    assert (len(tenant.users), len(tenant.admins), len(tenant.groups), len(tenant.apps)) == (20, 3, 4, 2)
    chosen = msp.admin.add_org(org_id="ABCDEF0123456789ABCDEF01", users=0, admins=0, groups=0, apps=0)
    assert chosen["org_id"] == "abcdef0123456789abcdef01"
    assert msp.get("/api/systemusers", headers={"x-org-id": "abcdef0123456789abcdef01"}).json()["totalCount"] == 0
    assert listed(msp)["totalCount"] == 5


def test_x_org_id_in_upper_case_is_a_malformed_id_as_in_jumpcloud(msp):
    """JumpCloud's ids are 24 lowercase hex digits (``jumpcloud.ids``): the same digits in upper case name no org,
    and a malformed ``x-org-id`` is a 400."""
    org = sorted(msp.state.orgs)[0]
    assert msp.get("/api/systemusers", headers={"x-org-id": org}).status_code == 200
    resp = msp.get("/api/systemusers", headers={"x-org-id": org.upper()})
    assert resp.status_code == 400 and "x-org-id" in resp.json()["message"]


@pytest.mark.parametrize("body,field", [
    ({"seed": "1"}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"users": -1}, "users"),
    ({"admins": True}, "admins"),
    ({"groups": 10**9}, "groups"),
    ({"apps": None}, "apps"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": 7}, "display_name"),
    ({"org_id": "xyz"}, "org_id"),
    ({"org_id": 5}, "org_id"),
    ({"colour": "red"}, "colour"),
])
def test_bad_add_bodies_are_400_naming_the_field(msp, body, field):
    resp = httpx.post(str(msp.base_url) + "/_sim/orgs", json=body)
    assert resp.status_code == 400 and field in resp.json()["message"]
    assert len(msp.state.orgs) == 3


def test_add_refuses_an_existing_org_and_a_body_that_is_not_an_object(msp):
    url = str(msp.base_url) + "/_sim/orgs"
    taken = next(iter(msp.state.orgs))
    assert httpx.post(url, json={"org_id": taken.upper()}).status_code == 409
    same_seed = httpx.post(url, json={"seed": 40})  # the seed of the first org: the same org id
    assert same_seed.status_code == 409 and "seed" in same_seed.json()["message"]
    assert httpx.post(url, content=b"[1]").status_code == 400
    assert httpx.post(url, content=b"{nope").status_code == 400
    assert len(msp.state.orgs) == 3


def test_rename_is_visible_in_the_listing(msp):
    org = sorted(msp.state.orgs)[2]
    old = msp.state.orgs[org].display_name
    resp = httpx.patch(str(msp.base_url) + f"/_sim/orgs/{org.upper()}", json={"display_name": "  Renamed Ltd "})
    assert resp.status_code == 200 and resp.json() == {"org_id": org, "display_name": "Renamed Ltd"}
    assert names(msp)[org] == "Renamed Ltd" and msp.admin.orgs()["names"][org] == "Renamed Ltd"
    (event,) = msp.admin.sim("GET", "/_sim/events", params={"kind": "org_renamed"}).json()["events"]
    assert (event["org"], event["old"], event["display_name"]) == (org, old, "Renamed Ltd")


@pytest.mark.parametrize("body,status,field", [
    ({}, 400, "display_name"),
    ({"display_name": " "}, 400, "display_name"),
    ({"display_name": None}, 400, "display_name"),
    ({"display_name": "x", "logo": "y"}, 400, "logo"),
])
def test_bad_rename_bodies_are_400(msp, body, status, field):
    org = next(iter(msp.state.orgs))
    resp = httpx.patch(str(msp.base_url) + f"/_sim/orgs/{org}", json=body)
    assert resp.status_code == status and field in resp.json()["message"]


def test_rename_of_an_unknown_org_is_404(msp):
    resp = httpx.patch(str(msp.base_url) + "/_sim/orgs/" + "0" * 24, json={"display_name": "x"})
    assert resp.status_code == 404


# ---- generated names -----------------------------------------------------------------------------------------


def test_generated_display_names_are_readable_deterministic_and_distinct():
    spec = TenantSpec(seed=3, users=2, admins=0, groups=0, apps=0)
    name = generate_tenant(spec).display_name
    assert NAME.match(name) and name.endswith(" 3") and generate_tenant(spec).display_name == name
    assert org_display_name("acme.test", 3) == "Acme 3"
    assert org_display_name("big-corp.example.com", 12) == "Big Corp 12"
    generated = {generate_tenant(TenantSpec(seed=s, users=0, admins=0, groups=0, apps=0)).display_name
                 for s in range(50)}
    assert len(generated) == 50
    assert generate_tenant(TenantSpec(seed=3, users=0, display_name="Chosen")).display_name == "Chosen"
    assert generate_tenant(TenantSpec(seed=3, users=0, domain="initech.test")).display_name == "Initech 3"
