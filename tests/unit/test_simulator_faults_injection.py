"""The simulator's fault rules over real HTTP: what a client sees on the wire for each fault (status, headers, body,
or a transport error), that `times` and `after` count, that DELETE /_sim/faults clears, that /_sim/stats counts
every injected fault and /_sim/events names the records a rule changed; then the project's own client against
some of them."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from jumpcloud import JumpCloudClient
from jumpcloud import errors as jc
from jumpcloud.retry import RetryPolicy
from simulator.cli import build_state
from simulator.faults import FaultRule, Faults, RateLimit
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "fault-injection-key-3b9d"
USERS = 250
UNAUTHORIZED = {"error": "Unauthorized", "message": "Unauthorized: api key user not found"}


class Sim:
    """A simulator of its own and helpers to drive /_sim."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.url = server.url
        self.api = httpx.Client(base_url=self.url, headers={"x-api-key": KEY}, timeout=10)
        self.ctl = httpx.Client(base_url=self.url, timeout=10)  # /_sim, and /api with other keys

    def faults(self, config: dict) -> dict:
        resp = self.ctl.put("/_sim/faults", json=config)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def rules(self, *rules: dict) -> dict:
        return self.faults({"rules": list(rules)})

    def clear(self) -> dict:
        return self.ctl.delete("/_sim/faults").json()

    def stats(self) -> dict:
        return self.ctl.get("/_sim/stats").json()

    def events(self, **params) -> list[dict]:
        return self.ctl.get("/_sim/events", params=params).json()["events"]

    def dump(self) -> dict:
        return self.ctl.get("/_sim/tenant").json()

    def user_ids(self) -> list[str]:
        return sorted(u["_id"] for u in self.dump()["users"])

    def list_users(self, **params) -> list[str]:
        """Page through /api/systemusers as the project's client does: sorted by _id, the total from page one."""
        ids: list[str] = []
        first = self.api.get("/api/systemusers", params={"limit": 100, "skip": 0, "sort": "_id", **params}).json()
        ids += [u["_id"] for u in first["results"]]
        for skip in range(100, first["totalCount"], 100):
            page = self.api.get("/api/systemusers", params={"limit": 100, "skip": skip, "sort": "_id", **params})
            ids += [u["_id"] for u in page.json()["results"]]
        return ids


def _serve():
    tenant = generate_tenant(TenantSpec(seed=5, users=USERS, groups=6, apps=2, avg_members_per_group=30))
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as server:
        s = Sim(server)
        yield s
        s.api.close()
        s.ctl.close()


@pytest.fixture
def sim():
    """A simulator of its own, for tests that change data, the key or the orgs."""
    yield from _serve()


@pytest.fixture(scope="module")
def _shared():
    yield from _serve()


@pytest.fixture
def shared(_shared):
    """One simulator for the tests that only read: faults, stats and events are cleared before each."""
    _shared.clear()
    _shared.ctl.post("/_sim/stats/reset")
    _shared.ctl.delete("/_sim/events")
    return _shared


def codes(sim: Sim, path: str, n: int, **kwargs) -> list[int]:
    return [sim.api.get(path, **kwargs).status_code for _ in range(n)]


# ---- 429 bursts ----------------------------------------------------------------------------------------------


def test_a_429_burst_without_retry_after_then_with_it(shared):
    shared.rules({"path": "^/api/systemusers$", "status": 429, "times": 3})
    answers = [shared.api.get("/api/systemusers") for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    assert all("retry-after" not in r.headers for r in answers[:3])
    assert answers[0].json()["message"] == "Too Many Requests" and answers[0].json()["code"] == 429
    assert shared.api.get("/api/v2/usergroups").status_code == 200

    shared.rules({"path": "^/api/v2/usergroups$", "status": 429, "retry_after": 7, "times": 2})
    burst = [shared.api.get("/api/v2/usergroups") for _ in range(3)]
    assert [r.status_code for r in burst] == [429, 429, 200]
    assert [r.headers.get("retry-after") for r in burst] == ["7", "7", None]
    stats = shared.stats()
    assert stats["by_fault"] == {"rule": 5} and stats["by_status"]["429"] == 5


def test_after_lets_requests_through_before_the_burst(shared):
    shared.rules({"path": "^/api/systemusers$", "after": 2, "status": 429, "times": 2, "retry_after": 1})
    assert codes(shared, "/api/systemusers", 5) == [200, 200, 429, 429, 200]
    assert shared.ctl.get("/_sim/faults").json()["rules"] == []


# ---- 5xx -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_count_down_and_are_counted(shared, status):
    shared.rules({"path": "^/api/systemusers$", "method": "GET", "status": status, "times": 2})
    answers = [shared.api.get("/api/systemusers") for _ in range(3)]
    assert [r.status_code for r in answers] == [status, status, 200]
    if status == 500:
        assert answers[0].json()["message"] == "Internal Server Error"
    else:  # a load balancer's page
        assert answers[0].headers["content-type"].startswith("text/html") and str(status) in answers[0].text
    assert shared.stats()["by_fault"] == {"rule": 2}
    assert [e["status"] for e in shared.events(kind="fault")] == [status, status]


# ---- slow answers ----------------------------------------------------------------------------------------------


def test_delay_makes_one_endpoint_slower_than_the_client_timeout(sim):
    sim.rules({"path": "^/api/systemusers$", "delay_ms": 2000, "times": 1})
    started = time.perf_counter()
    with httpx.Client(base_url=sim.url, headers={"x-api-key": KEY}, timeout=0.3) as impatient:
        assert impatient.get("/api/v2/usergroups").status_code == 200  # other endpoints are not slowed
        with pytest.raises(httpx.ReadTimeout):
            impatient.get("/api/systemusers")
        assert time.perf_counter() - started < 1.5
        time.sleep(0.1)  # the server notices the client left and gives up the request
        assert impatient.get("/api/systemusers").status_code == 200  # times: 1
    stats = sim.stats()
    assert stats["by_fault"] == {"delay": 1} and stats["by_status"]["499"] == 1 and stats["in_flight"] == 0


def test_delay_then_answer_normally_or_with_a_status(sim):
    sim.rules({"path": "^/api/systemusers$", "delay_ms": 250, "times": 1},
              {"path": "^/api/v2/usergroups$", "delay_ms": 250, "status": 503, "times": 1})
    started = time.perf_counter()
    assert sim.api.get("/api/systemusers").json()["totalCount"] == USERS
    assert sim.api.get("/api/v2/usergroups").status_code == 503
    assert time.perf_counter() - started >= 0.5
    assert sim.stats()["by_fault"] == {"delay": 2, "rule": 1}


def test_a_delayed_write_still_gets_its_body(sim):
    sim.rules({"path": "^/api/v2/usergroups$", "method": "POST", "delay_ms": 100})
    resp = sim.api.post("/api/v2/usergroups", json={"name": "Slow but sure"})
    assert resp.status_code == 201 and resp.json()["name"] == "Slow but sure"


# ---- connections dropped mid-answer ----------------------------------------------------------------------------


def test_drop_sends_status_headers_and_half_the_body_then_closes(shared):
    full = shared.api.get("/api/systemusers", params={"limit": 100}).content
    shared.rules({"path": "^/api/systemusers$", "action": "drop", "times": 1})
    with shared.api.stream("GET", "/api/systemusers", params={"limit": 100}) as resp:
        assert resp.status_code == 200 and resp.headers["content-length"] == str(len(full))
        received = b""
        with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
            for chunk in resp.iter_raw():
                received += chunk
    assert received == full[: len(full) // 2]
    assert shared.api.get("/api/systemusers", params={"limit": 100}).content == full  # times: 1
    assert shared.stats()["by_fault"] == {"drop": 1}
    assert shared.events(kind="fault")[0] | {"time": 0, "seq": 0} == {
        "seq": 0, "time": 0, "kind": "fault", "fault": "drop", "method": "GET", "path": "/api/systemusers",
        "sent": len(full) // 2, "of": len(full)}


def test_drop_of_an_empty_body_still_breaks_mid_body(sim):
    gid = sim.dump()["groups"][0]["id"]
    uid = next(u["_id"] for u in sim.dump()["users"] if u["_id"] not in sim.dump()["groups"][0]["members"])
    sim.rules({"path": "/members$", "method": "POST", "action": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        sim.api.post(f"/api/v2/usergroups/{gid}/members", json={"op": "add", "type": "user", "id": uid})
    assert uid in next(g for g in sim.dump()["groups"] if g["id"] == gid)["members"]  # the write happened


# ---- truncated and malformed JSON ------------------------------------------------------------------------------


def test_truncate_sends_the_first_half_with_a_matching_content_length(shared):
    full = shared.api.get("/api/v2/usergroups").content
    shared.rules({"path": "^/api/v2/usergroups$", "action": "truncate", "times": 2})
    for _ in range(2):
        resp = shared.api.get("/api/v2/usergroups")
        assert resp.status_code == 200 and resp.content == full[: len(full) // 2]
        assert resp.headers["content-length"] == str(len(resp.content))
        assert resp.headers["x-total-count"] == "6"
        with pytest.raises(json.JSONDecodeError):
            resp.json()
    assert shared.api.get("/api/v2/usergroups").content == full
    assert shared.stats()["by_fault"] == {"truncate": 2}


def test_malformed_replaces_the_body_keeping_status_and_headers(shared):
    shared.rules({"path": "^/api/systemusers$", "action": "malformed", "times": 1},
              {"path": "^/api/v2/usergroups$", "action": "malformed", "body": '{"results": [',
               "content_type": "text/plain", "times": 1})
    html = shared.api.get("/api/systemusers")
    assert (html.status_code, html.text) == (200, "<html>oops</html>")
    assert html.headers["content-type"] == "application/json" and html.headers["content-length"] == "17"
    cut = shared.api.get("/api/v2/usergroups")
    assert (cut.status_code, cut.text, cut.headers["content-type"]) == (200, '{"results": [', "text/plain")
    assert cut.headers["x-total-count"] == "6"
    assert shared.api.get("/api/systemusers").json()["totalCount"] == USERS
    assert shared.stats()["by_fault"] == {"malformed": 2}


# ---- totals that disagree with the rows ------------------------------------------------------------------------


def test_total_delta_changes_the_reported_total_not_the_rows(shared):
    shared.rules({"path": "^/api/systemusers$", "total_delta": 5, "times": 1},
              {"path": "^/api/v2/usergroups$", "total_delta": -3, "times": 1},
              {"path": "^/api/applications$", "total_delta": -100, "times": 1})
    v1 = shared.api.get("/api/systemusers", params={"limit": 100})
    assert v1.json()["totalCount"] == USERS + 5 and len(v1.json()["results"]) == 100
    assert v1.headers["content-length"] == str(len(v1.content))
    v2 = shared.api.get("/api/v2/usergroups", params={"limit": 100})
    assert v2.headers["x-total-count"] == "3" and len(v2.json()) == 6
    assert shared.api.get("/api/applications").json()["totalCount"] == 0  # never below 0
    assert shared.api.get("/api/systemusers").json()["totalCount"] == USERS
    assert shared.stats()["by_fault"] == {"total_delta": 3}


def test_total_delta_on_one_page_only_and_not_counted_without_a_total(shared):
    uid = shared.user_ids()[0]
    shared.rules({"path": "^/api/systemusers", "query": "(^|&)skip=200(&|$)", "total_delta": 1},
              {"path": "^/api/systemusers/", "total_delta": 1})
    assert shared.api.get("/api/systemusers", params={"skip": 0}).json()["totalCount"] == USERS
    assert shared.api.get("/api/systemusers", params={"skip": 200}).json()["totalCount"] == USERS + 1
    assert shared.api.get(f"/api/systemusers/{uid}").json()["_id"] == uid  # no total: unchanged
    assert shared.stats()["by_fault"] == {"total_delta": 1}


# ---- records added or removed between pages --------------------------------------------------------------------


def test_removing_users_already_paged_past_shifts_later_pages(sim):
    before = sim.user_ids()
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "times": 1,
               "mutate": {"remove_users": 3}})
    listed = sim.list_users()
    removed = [e["id"] for e in sim.events(kind="user_removed")]
    assert removed == before[:3]  # the first three in the listing's order (_id), already read on page one
    after = sim.user_ids()
    assert after == [u for u in before if u not in removed]
    missed = set(after) - set(listed)
    assert missed == set(before[100:103])  # they slid back onto page one, already read
    assert len(listed) == len(set(listed)) == USERS - 3  # page one (100), then 100 and 47 of what is left
    assert sorted(sim.list_users()) == after  # the next full listing is complete
    stats = sim.stats()
    assert stats["by_fault"] == {"mutate": 1}
    events = sim.events(kind="user_removed")
    assert all(e["rule"] == "^/api/systemusers$" and "skip=100" in e["request"] for e in events)


def test_adding_users_at_the_start_duplicates_across_pages(sim):
    before = sim.user_ids()
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "times": 1,
               "mutate": {"add_users": 2, "add_at": "start"}})
    listed = sim.list_users()
    added = [e["id"] for e in sim.events(kind="user_added")]
    assert len(added) == 2 and all(a < before[0] for a in added)  # older ids than any: first in _id order
    assert sim.dump()["users"][:2] == [u for u in sim.dump()["users"] if u["_id"] in added]  # first in natural order
    assert listed == before[:100] + before[98:]  # two read twice (the last page holds the two extra rows)
    assert set(added).isdisjoint(listed)  # and the new ones missed
    assert sorted(sim.list_users()) == sorted(before + added)


def test_adding_users_at_the_end_grows_the_listing_past_its_first_total(sim):
    before = sim.user_ids()
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "times": 1,
               "mutate": {"add_users": 60}})
    listed = sim.list_users()  # pages at 0, 100, 200 for the first total of 250; 310 now
    added = [e["id"] for e in sim.events(kind="user_added")]
    assert sorted(added) == added and added[0] > before[-1]  # newer than every other id
    assert listed == before + added[:50]  # the last page came full; the ten past it were missed
    assert sim.user_ids() == before + added
    created = sim.api.get(f"/api/systemusers/{added[0]}").json()
    assert created["state"] == "ACTIVATED" and created["email"] == f"added-{added[0]}@example.org"


def test_removing_the_last_users_of_a_filtered_sorted_listing(sim):
    sim.rules({"path": "^/api/systemusers$", "times": 1, "mutate": {"remove_users": 2, "remove_at": "end"}})
    order = [u["_id"] for u in sim.api.get("/api/systemusers", params={"sort": "-_id", "limit": 1}).json()["results"]]
    removed = [e["id"] for e in sim.events(kind="user_removed")]
    all_ids = sorted(set(sim.user_ids()) | set(removed))
    assert removed == all_ids[:2][::-1]  # the end of a descending listing: the two smallest ids
    assert order == [all_ids[-1]]


def test_member_and_group_mutations(sim):
    dump = sim.dump()
    group = next(g for g in dump["groups"] if 2 <= len(g["members"]) <= 90)
    gid, members = group["id"], group["members"]
    sim.rules({"path": "/members$", "times": 1, "mutate": {"remove_members": 2, "add_members": 3}})
    page = sim.api.get(f"/api/v2/usergroups/{gid}/members", params={"limit": 100}).json()
    removed = [e["id"] for e in sim.events(kind="member_removed")]
    added = [e["id"] for e in sim.events(kind="member_added")]
    assert removed == members[:2] and len(added) == 3 and not set(added) & set(members)
    assert [m["to"]["id"] for m in page] == members[2:] + added
    assert all(e["group"] == gid for e in sim.events(kind="member_added"))

    sim.rules({"path": "^/api/v2/usergroups$", "times": 1,
               "mutate": {"remove_groups": 1, "add_groups": 1, "add_at": "start"}})
    listed = sim.api.get("/api/v2/usergroups", params={"limit": 100}).json()
    (gone,) = [e["id"] for e in sim.events(kind="group_removed")]
    (new,) = [e["id"] for e in sim.events(kind="group_added")]
    assert gone == dump["groups"][0]["id"] and listed[0]["id"] == new and gone not in {g["id"] for g in listed}
    assert sim.stats()["by_fault"] == {"mutate": 2}


def test_member_mutation_without_a_group_is_logged_as_skipped(sim):
    sim.rules({"path": "^/api/systemusers$", "times": 1, "mutate": {"add_members": 1}})
    assert sim.api.get("/api/systemusers").status_code == 200
    (skipped,) = sim.events(kind="mutate_skipped")
    assert "no group" in skipped["reason"]
    gid = sim.dump()["groups"][1]["id"]
    sim.rules({"path": "^/api/systemusers$", "times": 1, "mutate": {"add_members": 1, "group": gid}})
    sim.api.get("/api/systemusers")
    assert sim.events(kind="member_added")[0]["group"] == gid


def test_a_group_id_in_upper_case_in_the_path_names_no_group(sim):
    """A path's group id counts only in JumpCloud's form (24 lowercase hex digits): the request for the
    upper-case spelling finds no group, and the mutation must not change the group it does not reach."""
    group = next(g for g in sim.dump()["groups"] if g["members"])
    upper = group["id"].upper()
    sim.rules({"path": "/members$", "times": 1, "mutate": {"add_members": 1}})
    assert sim.api.get(f"/api/v2/usergroups/{upper}/members").status_code == 404
    assert sim.events(kind="member_added") == []
    (skipped,) = sim.events(kind="mutate_skipped")
    assert "no group" in skipped["reason"]
    assert next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"] == group["members"]


# ---- a key revoked mid-sync ------------------------------------------------------------------------------------


def test_a_401_rule_has_jumpclouds_body(sim):
    sim.rules({"path": "^/api/", "status": 401, "times": 2})
    resp = sim.api.get("/api/systemusers")
    assert resp.status_code == 401 and resp.json() | UNAUTHORIZED == resp.json()
    assert sim.api.get("/api/v2/usergroups").status_code == 401
    assert sim.api.get("/api/v2/usergroups").status_code == 200


def test_changing_the_key_at_runtime_revokes_the_old_one(sim):
    resp = sim.ctl.put("/_sim/api-key", json={"api_key": "the-new-key"})
    assert resp.status_code == 200 and "the-new-key" not in resp.text and KEY not in resp.text
    old = sim.api.get("/api/systemusers")
    assert old.status_code == 401 and old.json() | UNAUTHORIZED == old.json()
    assert sim.ctl.get("/api/systemusers", headers={"x-api-key": "never-valid"}).status_code == 401
    assert sim.ctl.get("/api/systemusers", headers={"x-api-key": "the-new-key"}).status_code == 200
    assert sim.stats()["by_fault"] == {"revoked_key": 1}  # a key that never worked is not a revoked one
    sim.ctl.put("/_sim/api-key", json={"api_key": KEY})  # and back
    assert sim.api.get("/api/systemusers").status_code == 200
    assert sim.ctl.get("/api/systemusers", headers={"x-api-key": "the-new-key"}).status_code == 401
    assert [e["replaced"] for e in sim.events(kind="key_revoked")] == [True, True]
    for bad in ({}, {"api_key": ""}, {"api_key": 5}):
        assert sim.ctl.put("/_sim/api-key", json=bad).status_code == 400


def test_a_rule_revokes_the_key_at_a_chosen_request(sim):
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "revoke_key": True, "times": 1})
    assert sim.api.get("/api/systemusers", params={"skip": 0}).status_code == 200
    assert sim.api.get("/api/systemusers", params={"skip": 100}).status_code == 401
    assert sim.api.get("/api/v2/usergroups").status_code == 401  # and everything after it
    assert sim.stats()["by_fault"] == {"revoked_key": 2}
    (event,) = sim.events(kind="key_revoked")
    assert event["by"] == "rule ^/api/systemusers$" and event["replaced"] is False
    sim.ctl.put("/_sim/api-key", json={"api_key": KEY})
    assert sim.api.get("/api/v2/usergroups").status_code == 200


def test_revoking_without_a_replacement(sim):
    assert sim.ctl.put("/_sim/api-key", json={"api_key": None}).json()["replaced"] is False
    assert sim.api.get("/api/systemusers").status_code == 401


# ---- an org that disappears ------------------------------------------------------------------------------------


def test_a_removed_org_answers_404_in_multi_tenant_mode():
    state = build_state(api_key=KEY, seed=3, users=20, groups=2, apps=1, orgs=2)
    gone, kept = list(state.orgs)
    with SimulatorServer(state) as server:
        def get(org: str) -> httpx.Response:
            return httpx.get(server.url + "/api/systemusers", headers={"x-api-key": KEY, "x-org-id": org})

        assert get(gone).status_code == 200
        removed = httpx.delete(server.url + f"/_sim/orgs/{gone}").json()
        assert removed["removed"] == [gone]
        resp = get(gone)
        assert resp.status_code == 404 and resp.json()["message"] == "Not Found: organization not found"
        assert get(kept).status_code == 200
        assert httpx.get(server.url + f"/_sim/tenant?org={gone}").json()["org_id"] == gone  # data kept
        assert httpx.get(server.url + "/_sim/stats").json()["by_fault"] == {"removed_org": 1}
        assert httpx.post(server.url + f"/_sim/orgs/{gone}/restore").json()["removed"] == []
        assert get(gone).status_code == 200
        assert httpx.delete(server.url + "/_sim/orgs/" + "0" * 24).status_code == 404


def test_a_rule_removes_the_org_mid_run_and_a_404_rule_fakes_it(sim):
    sim.rules({"path": "^/api/v2/usergroups$", "remove_org": True, "times": 1})
    assert sim.api.get("/api/systemusers").status_code == 200
    assert sim.api.get("/api/v2/usergroups").status_code == 404
    assert sim.api.get("/api/systemusers").json()["message"] == "Not Found: organization not found"
    org = sim.ctl.get("/_sim/orgs").json()["removed"][0]
    sim.ctl.post(f"/_sim/orgs/{org}/restore")
    sim.rules({"path": "^/api/", "status": 404, "message": "Not Found: organization not found"})
    assert {sim.api.get(p).status_code for p in ("/api/systemusers", "/api/v2/usergroups")} == {404}
    assert sim.stats()["by_fault"] == {"removed_org": 2, "rule": 2}


# ---- config, clearing, events ----------------------------------------------------------------------------------


def test_delete_faults_clears_every_kind_of_rule(sim):
    config = sim.rules(
        {"path": "^/api/", "status": 429}, {"path": "^/api/", "delay_ms": 5000},
        {"path": "^/api/", "action": "drop"}, {"path": "^/api/", "action": "truncate"},
        {"path": "^/api/", "action": "malformed"}, {"path": "^/api/", "total_delta": 9},
        {"path": "^/api/", "mutate": {"remove_users": 1}}, {"path": "^/api/", "revoke_key": True},
        {"path": "^/api/", "remove_org": True})
    assert len(config["rules"]) == 9
    assert config["rules"][1] == {
        "path": "^/api/", "method": None, "query": None, "status": None, "times": None, "after": 0,
        "retry_after": None, "message": None, "error": None, "delay_ms": 5000.0, "action": None, "body": None,
        "content_type": None, "total_delta": None, "mutate": None, "revoke_key": False, "remove_org": False}
    assert sim.clear()["rules"] == []
    assert sim.api.get("/api/systemusers").json()["totalCount"] == USERS
    assert sim.stats()["by_fault"] == {}


def test_a_rule_round_trips_through_get_and_put(sim):
    rule = {"path": "^/api/systemusers$", "method": "GET", "query": "skip=100", "times": 2, "after": 1,
            "delay_ms": 10, "total_delta": -2, "mutate": {"add_users": 1}}
    config = sim.rules(rule)
    assert sim.faults({"latency_ms": 0})["rules"] == config["rules"]  # a merge keeps the rules as they are
    sim.api.get("/api/systemusers", params={"skip": 100})  # after: 1
    sim.api.get("/api/systemusers", params={"skip": 100})
    (left,) = sim.ctl.get("/_sim/faults").json()["rules"]
    assert (left["after"], left["times"]) == (0, 1)


@pytest.mark.parametrize("bad", [
    {"path": "x", "status": 500, "action": "drop"},
    {"path": "x", "action": "explode"},
    {"path": "x", "status": 500, "total_delta": 1},
    {"path": "x", "action": "truncate", "mutate": {"add_users": 1}},
    {"path": "x"},
    {"path": "x", "status": 500, "tims": 2},
    {"path": "x", "status": 500, "times": 0},
    {"path": "x", "delay_ms": -1},
    {"path": "x", "mutate": {"add_users": -1}},
    {"path": "x", "mutate": {"add_user": 1}},
    {"path": "x", "mutate": {}},
    {"path": "x", "mutate": {"add_users": 1, "add_at": "middle"}},
    {"path": "x", "total_delta": 1.5},
    {"path": "x", "revoke_key": "yes"},
    {"path": "x", "query": "(", "status": 500},
    "not a rule",
])
def test_invalid_rules_are_refused_and_change_nothing(shared, bad):
    shared.rules({"path": "keep", "status": 500})
    resp = shared.ctl.put("/_sim/faults", json={"rules": [bad]})
    assert resp.status_code == 400 and resp.json()["message"]
    assert [r["path"] for r in shared.ctl.get("/_sim/faults").json()["rules"]] == ["keep"]


def test_events_since_kind_and_clear(sim):
    sim.rules({"path": "^/api/systemusers$", "status": 503, "times": 2})
    sim.api.get("/api/systemusers")
    sim.api.get("/api/systemusers")
    events = sim.events()
    assert [e["seq"] for e in events] == [1, 2] and {e["fault"] for e in events} == {"rule"}
    assert [e["seq"] for e in sim.events(since=1)] == [2]
    assert sim.events(kind="user_removed") == []
    assert sim.ctl.delete("/_sim/events").json() == {"events": [], "last": 2}
    assert sim.events() == [] and sim.ctl.get("/_sim/events", params={"since": "x"}).status_code == 400


def test_a_rule_that_loses_to_the_rate_limit_is_not_used_up():
    faults = Faults(rate_limit=RateLimit(rps=1, burst=1), rules=[FaultRule(path="^/api/", total_delta=1, times=1)])
    assert faults.plan("GET", "/api/x", now=1.0).rule is not None and faults.rules == []  # takes the only token
    faults.rules = [FaultRule(path="^/api/", total_delta=1, times=1)]
    plan = faults.plan("GET", "/api/x", now=1.0)
    assert plan.decision is not None and plan.decision.reason == "rate_limit" and plan.rule is None
    assert len(faults.rules) == 1
    faults.rules = [FaultRule(path="^/api/", status=500, times=1)]
    assert faults.plan("GET", "/api/x", now=1.0).decision.status == 500  # an answering rule beats the bucket


# ---- the project's client against them -------------------------------------------------------------------------


def run_client(sim: Sim, work, *, attempts: int = 3, timeout: float = 10.0, key: str = KEY):
    async def main():
        policy = RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0)
        async with JumpCloudClient(base_url=sim.url, api_key=key, retry=policy, timeout=timeout) as client:
            try:
                return await work(client), client.stats
            except jc.JumpCloudError as exc:
                return exc, client.stats

    return asyncio.run(main())


async def all_users(client: JumpCloudClient) -> list[str]:
    return [u["_id"] async for page in client.list_v1("/api/systemusers") for u in page]


async def all_groups(client: JumpCloudClient) -> list[str]:
    return [g["id"] async for page in client.list_v2("/api/v2/usergroups") for g in page]


def test_client_rides_out_a_429_burst_and_drops_within_its_attempts(sim):
    sim.rules({"path": "^/api/systemusers$", "query": "skip=0", "status": 429, "retry_after": 0, "times": 2},
              {"path": "^/api/systemusers$", "query": "skip=100", "action": "drop", "times": 2})
    ids, stats = run_client(sim, all_users)
    assert sorted(ids) == sim.user_ids()
    assert stats.by_status["transport"] == 2 and stats.throttled == 2 and stats.retries == 4
    assert sim.stats()["by_fault"] == {"rule": 2, "drop": 2}


def test_client_gives_up_on_a_connection_that_always_drops_with_a_transport_error(sim):
    sim.rules({"path": "^/api/systemusers$", "action": "drop"})
    error, stats = run_client(sim, all_users)
    assert isinstance(error, jc.TransportError) and error.attempts == 3 and "RemoteProtocolError" in str(error)
    assert stats.requests == 3 and KEY not in str(error)


def test_client_times_out_on_a_slow_endpoint_and_retries(sim):
    sim.rules({"path": "^/api/v2/usergroups$", "delay_ms": 1500, "times": 1})
    started = time.perf_counter()
    ids, stats = run_client(sim, all_groups, timeout=0.3)
    assert len(ids) == 6 and stats.by_status["transport"] == 1 and time.perf_counter() - started < 1.4
    sim.rules({"path": "^/api/v2/usergroups$", "delay_ms": 1500})
    error, _ = run_client(sim, all_groups, timeout=0.2, attempts=2)
    assert isinstance(error, jc.TransportError) and "ReadTimeout" in str(error)


@pytest.mark.parametrize("rule", [{"action": "truncate"}, {"action": "malformed"},
                                  {"action": "malformed", "body": '{"results": ['}])
def test_client_retries_bad_json_then_reports_it(sim, rule):
    sim.rules({"path": "^/api/systemusers$", "times": 1, **rule})
    ids, stats = run_client(sim, all_users)
    assert sorted(ids) == sim.user_ids() and stats.retries == 1  # a one-off bad 200 is retried like a 5xx
    sim.rules({"path": "^/api/systemusers$", **rule})
    error, stats = run_client(sim, all_users, attempts=3)
    assert isinstance(error, jc.BadResponseError) and "invalid JSON" in str(error)
    assert stats.requests == 3  # a persistent one fails the listing after max_attempts


def test_client_trusts_the_first_pages_total(sim):
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=0(&|$)", "total_delta": -60, "times": 1})
    short, stats = run_client(sim, all_users)
    assert len(short) == 200  # total 190 from page one: the page at skip=200 is never asked for ...
    assert stats.inconsistent_pages == 1  # ... but the over-full page is flagged, so nothing gets deleted
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=0(&|$)", "total_delta": 60, "times": 1})
    full, stats = run_client(sim, all_users)
    assert sorted(full) == sim.user_ids() and stats.requests == 4  # 310: one extra, empty page
    sim.rules({"path": "^/api/v2/usergroups$", "total_delta": 3, "times": 1})
    groups, _ = run_client(sim, all_groups)
    assert len(groups) == 6


def test_client_fails_fast_on_a_revoked_key_and_a_vanished_org(sim):
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "revoke_key": True, "times": 1})
    error, stats = run_client(sim, all_users)
    assert isinstance(error, jc.AuthError) and error.status == 401 and error.attempts == 1
    assert "api key user not found" in str(error) and KEY not in str(error) and KEY not in repr(error)
    sim.ctl.put("/_sim/api-key", json={"api_key": KEY})
    org = sim.dump()["org_id"]
    sim.ctl.delete(f"/_sim/orgs/{org}")
    error, stats = run_client(sim, all_groups)
    assert isinstance(error, jc.NotFoundError) and "organization not found" in str(error) and stats.requests == 1


def test_client_listing_while_users_vanish_misses_some_and_the_next_listing_is_whole(sim):
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=0(&|$)", "times": 1,
               "mutate": {"remove_users": 5}})
    first, _ = run_client(sim, all_users)
    removed = {e["id"] for e in sim.events(kind="user_removed")}
    assert len(removed) == 5 and removed.isdisjoint(first)  # removed before page one was served
    assert sorted(first) == sim.user_ids()
    before = sim.user_ids()
    sim.rules({"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "times": 1,
               "mutate": {"remove_users": 5}})
    second, _ = run_client(sim, all_users)  # pages 100 and 200 run concurrently: either may be served first
    after = sim.user_ids()
    assert set(before) - set(after) == set(before[:5])
    assert set(after) - set(second) == set(before[100:105])  # shifted back onto page one after it was read
    third, _ = run_client(sim, all_users)
    assert sorted(third) == after and len(third) == USERS - 10
