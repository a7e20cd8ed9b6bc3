"""The simulator's Directory Insights over real HTTP: every write records its event, the events endpoint pages
by X-Search_after as the spec says, refuses bad queries, and its fault knobs delay, duplicate and drop events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "sim-insights-key-7d1e"
SPEC = TenantSpec(seed=31, users=30, admins=4, groups=4, apps=3, avg_members_per_group=5)
EVENTS = "/insights/directory/v1/events"


def _since(seconds: float = 60) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def sim():
    tenant = generate_tenant(SPEC)
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)).start() as srv:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=10) as client:
            client.dump = lambda: client.get("/_sim/tenant").json()  # type: ignore[attr-defined]
            yield client


def query(client: httpx.Client, **body) -> httpx.Response:
    return client.post(EVENTS, json={"service": ["directory"], "start_time": _since(), **body})


def all_events(client: httpx.Client, limit: int = 1000, **body) -> list[dict]:
    """Every page, as a client following the spec reads them."""
    events, token = [], None
    while True:
        resp = query(client, limit=limit, **({"search_after": token} if token is not None else {}), **body)
        assert resp.status_code == 200, resp.text
        events += resp.json()
        assert int(resp.headers["X-Result-Count"]) == len(resp.json())
        token = json.loads(resp.headers["X-Search_after"])  # on every page, the last one too
        if int(resp.headers["X-Result-Count"]) < int(resp.headers["X-Limit"]):
            return events


def test_every_write_records_the_event_jumpcloud_would_emit(sim):
    dump = sim.dump()
    group, app, admin = dump["groups"][0], dump["apps"][0], dump["admins"][0]
    uid = sim.post("/api/systemusers", json={"email": "e@example.org", "username": "eve"}).json()["_id"]
    sim.put(f"/api/systemusers/{uid}", json={"jobTitle": "CFO"})
    sim.post(f"/api/systemusers/{uid}/state/activate", json={})
    sim.put(f"/api/systemusers/{uid}", json={"suspended": True, "state": "SUSPENDED"})
    assert sim.post(f"/api/v2/usergroups/{group['id']}/members", json={"op": "add", "type": "user", "id": uid}
                    ).status_code == 204
    sim.post(f"/api/v2/usergroups/{group['id']}/members", json={"op": "remove", "type": "user", "id": uid})
    sim.post(f"/api/v2/applications/{app['_id']}/associations", json={"op": "add", "type": "user", "id": uid})
    sim.post(f"/api/v2/applications/{app['_id']}/associations",
             json={"op": "add", "type": "user_group", "id": group["id"]})
    new_group = sim.post("/api/v2/usergroups", json={"name": "Night Shift"}).json()["id"]
    sim.put(f"/api/v2/usergroups/{new_group}", json={"name": "Day Shift"})
    sim.delete(f"/api/v2/usergroups/{new_group}")
    sim.put(f"/api/users/{admin['_id']}", json={"roleName": "Read Only"})
    sim.delete(f"/api/systemusers/{uid}")
    events = all_events(sim)

    assert [e["event_type"] for e in events] == [
        "user_create", "user_update", "user_update", "user_update", "association_change", "association_change",
        "association_change", "association_change", "group_create", "group_update", "group_delete", "admin_update",
        "user_delete"]
    assert all(e["service"] == "directory" and e["organization"] == dump["org_id"] and e["success"] for e in events)
    assert len({e["id"] for e in events}) == len(events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert events[0]["resource"] == {"id": uid, "type": "user", "username": "eve"}
    assert events[1]["changes"] == [{"field": "jobTitle", "from": "", "to": "CFO"}]
    assert {"field": "state", "from": "STAGED", "to": "ACTIVATED"} in events[2]["changes"]
    assert {"field": "suspended", "from": False, "to": True} in events[3]["changes"]
    member = events[4]["association"]
    assert member["op"] == "add" and events[5]["association"]["op"] == "remove"
    assert member["connection"] == {"from": {"type": "user_group", "object_id": group["id"], "name": group["name"]},
                                    "to": {"type": "user", "object_id": uid, "name": "eve"}}
    assert events[6]["association"]["connection"]["from"]["type"] == "application"
    assert events[7]["association"]["connection"]["to"] == {"type": "user_group", "object_id": group["id"],
                                                             "name": group["name"]}
    assert events[9]["changes"] == [{"field": "name", "from": "Night Shift", "to": "Day Shift"}]
    assert events[11]["resource"]["type"] == "admin"
    assert {"roleName": "Read Only"} == {c["field"]: c["to"] for c in events[11]["changes"] if c["field"] == "roleName"}


def test_sim_mutations_record_events_too(sim):
    sim.post("/_sim/admins", json={"email": "new.admin@example.org", "roleName": "Manager"})
    sim.put("/_sim/faults", json={"rules": [{"path": "^/api/systemusers$", "times": 1,
                                             "mutate": {"add_users": 2, "remove_users": 1}}]})
    sim.get("/api/systemusers")
    types = [e["event_type"] for e in all_events(sim)]
    assert types == ["admin_create", "user_delete", "user_create", "user_create"]


def test_pages_follow_x_search_after_to_the_last_short_page(sim):
    group = sim.dump()["groups"][0]["id"]
    record = sim.get(f"/api/v2/usergroups/{group}").json()  # a v2 PUT replaces: send the whole group
    for n in range(23):
        sim.put(f"/api/v2/usergroups/{group}", json={**record, "name": f"renamed {n}"})
    first = query(sim, limit=10)
    assert first.headers["X-Limit"] == "10" and first.headers["X-Result-Count"] == "10"
    assert first.headers["X-Sort"] == "ASC" and first.headers["X-Request-Id"]
    token = json.loads(first.headers["X-Search_after"])
    assert token == [int(datetime.fromisoformat(first.json()[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
                         * 1000), first.json()[-1]["id"]]
    paged = all_events(sim, limit=10)
    assert [e["changes"][0]["to"] for e in paged] == [f"renamed {n}" for n in range(23)]
    # Exactly a full last page: one more request answers an empty page, which still carries the token.
    exact = all_events(sim, limit=23)
    assert len(exact) == 23
    last = json.loads(query(sim, limit=23).headers["X-Search_after"])
    empty = query(sim, limit=23, search_after=last)
    assert empty.json() == [] and json.loads(empty.headers["X-Search_after"]) == last
    descending = query(sim, sort="desc").json()
    assert descending == list(reversed(paged)) and query(sim, sort="desc").headers["X-Sort"] == "DESC"
    window_end = paged[9]["timestamp"]
    assert query(sim, end_time=window_end).json() == [e for e in paged if e["timestamp"] < window_end]


@pytest.mark.parametrize("body, message", [
    ({"service": None}, "service is required"),
    ({"service": ["directory", "nonsense"]}, "unknown service 'nonsense'"),
    ({"start_time": None}, "start_time is required"),
    ({"start_time": "yesterday"}, "not an RFC 3339 time"),
    ({"start_time": "2999-01-01T00:00:00Z"}, "must not be in the future"),
    ({"end_time": "2000-01-01T00:00:00Z"}, "Start Time not after End Time"),
    ({"search_after": "abc"}, "search_after must be"),
])
def test_bad_queries_are_400_with_the_reason(sim, body, message):
    resp = query(sim, **body)
    assert resp.status_code == 400 and message in resp.json()["message"]


def test_nonsensical_limits_fall_back_to_1000_and_other_services_are_empty(sim):
    sim.post("/api/v2/usergroups", json={"name": "A group"})
    for limit in (0, 10_001, "ten", True):
        assert query(sim, limit=limit).headers["X-Limit"] == "1000"
    assert query(sim, limit=10_000).headers["X-Limit"] == "10000"
    assert query(sim, service=["sso"]).json() == []
    assert len(query(sim, service=["all"]).json()) == 1


def test_the_events_endpoint_needs_the_key(sim):
    resp = httpx.post(str(sim.base_url) + EVENTS, json={"service": ["directory"], "start_time": _since()})
    assert resp.status_code == 401


def test_late_duplicated_and_lost_events(sim):
    group = sim.dump()["groups"][0]["id"]
    record = sim.get(f"/api/v2/usergroups/{group}").json()  # a v2 PUT replaces: send the whole group
    rename = lambda name: sim.put(f"/api/v2/usergroups/{group}", json={**record, "name": name})
    sim.put("/_sim/faults", json={"insights": {"delay_seconds": 1.0}})
    rename("late")
    assert all_events(sim) == []  # not visible yet, though its timestamp has passed
    time.sleep(1.1)
    assert [e["changes"][0]["to"] for e in all_events(sim)] == ["late"]

    sim.put("/_sim/faults", json={"insights": {"delay_seconds": 0, "duplicate": True}})
    rename("twice")
    twice = [e for e in all_events(sim) if e["changes"][0]["to"] == "twice"]
    assert len(twice) == 2 and twice[0] == twice[1]

    sim.put("/_sim/faults", json={"insights": {"duplicate": False, "drop_next": 1}})
    rename("lost")
    rename("kept")
    assert [e["changes"][0]["to"] for e in all_events(sim)][-1:] == ["kept"]
    assert "lost" not in [e["changes"][0]["to"] for e in all_events(sim)]
    assert sim.get("/_sim/faults").json()["insights"]["drop_next"] == 0
    sim.delete("/_sim/faults")
    assert sim.get("/_sim/faults").json()["insights"] == {"delay_seconds": 0.0, "duplicate": False,
                                                          "drop_next": 0, "retention_days": 90.0}


def test_events_past_retention_are_gone(sim):
    group = sim.dump()["groups"][0]["id"]
    sim.put(f"/api/v2/usergroups/{group}", json={"name": "soon forgotten"})
    assert len(all_events(sim)) == 1
    sim.put("/_sim/faults", json={"insights": {"retention_days": 0.5 / 86400}})  # half a second
    time.sleep(0.6)
    assert all_events(sim) == []
    assert sim.put("/_sim/faults", json={"insights": {"retention_days": 0}}).status_code == 400


def test_multi_tenant_events_are_per_org():
    orgs = [generate_tenant(TenantSpec(seed=s, users=5, admins=1, groups=2, apps=1)) for s in (1, 2)]
    state = SimulatorState(orgs={t.org_id: t for t in orgs}, api_key=KEY, multi_tenant=True)
    with SimulatorServer(state).start() as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        body = {"service": ["directory"], "start_time": _since()}
        assert client.post(EVENTS, json=body, headers={"x-api-key": KEY}).status_code == 401  # x-org-id required
        first = {"x-api-key": KEY, "x-org-id": orgs[0].org_id}
        gid = next(iter(orgs[0].groups))
        client.put(f"/api/v2/usergroups/{gid}", json={"name": "only in org one"}, headers=first)
        assert len(client.post(EVENTS, json=body, headers=first).json()) == 1
        assert client.post(EVENTS, json=body, headers={"x-api-key": KEY, "x-org-id": orgs[1].org_id}).json() == []
