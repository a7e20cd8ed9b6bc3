"""Where public JumpCloud clients showed the real service behaving otherwise than the simulator did (issue 26):
each test holds one row of simulator/README.md's fidelity table, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "sim-fidelity-key-81d0"
SPEC = TenantSpec(seed=26, users=60, admins=4, groups=8, apps=4, avg_members_per_group=6)


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
