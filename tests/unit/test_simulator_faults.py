"""Fault injection of the simulator: rules, rate limit (with and without Retry-After), random errors, latency,
and the runtime config at /_sim/faults."""

from __future__ import annotations

import time

import httpx
import pytest

from simulator.faults import Faults, RateLimit
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "fault-test-key"


@pytest.fixture
def sim():
    tenant = generate_tenant(TenantSpec(seed=3, users=30, groups=4))
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}, timeout=10) as client:
            yield client


def put_faults(client: httpx.Client, config: dict) -> httpx.Response:
    return httpx.put(str(client.base_url) + "/_sim/faults", json=config)


def test_a_rule_fails_one_route_always(sim):
    assert put_faults(sim, {"rules": [{"path": "^/api/v2/usergroups$", "status": 500}]}).status_code == 200
    for _ in range(3):
        resp = sim.get("/api/v2/usergroups")
        assert resp.status_code == 500 and resp.json()["message"]
    assert sim.get("/api/systemusers").status_code == 200
    gid = next(iter(httpx.get(str(sim.base_url) + "/_sim/tenant").json()["groups"]))["id"]
    assert sim.get(f"/api/v2/usergroups/{gid}/members").status_code == 200  # anchored: sub-paths unaffected


def test_a_rule_with_times_and_method_counts_down(sim):
    put_faults(sim, {"rules": [{"path": "/api/systemusers", "method": "get", "status": 503, "times": 2}]})
    codes = [sim.get("/api/systemusers").status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    assert httpx.get(str(sim.base_url) + "/_sim/faults").json()["rules"] == []


def test_a_rule_can_send_retry_after(sim):
    put_faults(sim, {"rules": [{"path": "/api/users", "status": 429, "retry_after": 3, "times": 1}]})
    resp = sim.get("/api/users")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"


def test_rate_limit_answers_429_with_retry_after(sim):
    put_faults(sim, {"rate_limit": {"rps": 2, "burst": 3, "retry_after": 2}})
    codes = [sim.get("/api/systemusers") for _ in range(5)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    throttled = [r for r in codes if r.status_code == 429]
    assert throttled and all(r.headers["retry-after"] == "2" for r in throttled)
    assert throttled[0].json()["message"] == "Too Many Requests"
    time.sleep(0.6)  # 2 tokens a second: one is back
    assert sim.get("/api/systemusers").status_code == 200
    stats = httpx.get(str(sim.base_url) + "/_sim/stats").json()
    assert stats["by_status"]["429"] == len(throttled) and stats["by_fault"]["rate_limit"] == len(throttled)


def test_rate_limit_without_retry_after_sends_no_header(sim):
    put_faults(sim, {"rate_limit": {"rps": 1, "burst": 1, "retry_after": None}})
    sim.get("/api/systemusers")
    resp = sim.get("/api/systemusers")
    assert resp.status_code == 429 and "retry-after" not in resp.headers


def test_rate_limit_auto_retry_after_is_the_wait_rounded_up(sim):
    put_faults(sim, {"rate_limit": {"rps": 0.25, "burst": 1, "retry_after": "auto"}})
    sim.get("/api/systemusers")
    resp = sim.get("/api/systemusers")
    assert resp.status_code == 429 and resp.headers["retry-after"] in ("4", "3")


def test_error_rate_one_fails_everything_with_5xx_and_gateway_errors_are_html(sim):
    put_faults(sim, {"error_rate": 1.0, "error_statuses": [502]})
    resp = sim.get("/api/systemusers")
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("text/html") and "502" in resp.text
    put_faults(sim, {"error_statuses": [500, 503]})
    assert {sim.get("/api/systemusers").status_code for _ in range(20)} == {500, 503}


def test_error_rate_is_deterministic_for_a_seed():
    def run() -> list[int]:
        tenant = generate_tenant(TenantSpec(seed=1, users=5))
        state = SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY, faults=Faults(error_rate=0.3, seed=99))
        with SimulatorServer(state) as srv, httpx.Client(base_url=srv.url, headers={"x-api-key": KEY}) as c:
            return [c.get("/api/systemusers").status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 3 <= sum(code >= 500 for code in first) <= 25 and 200 in first


def test_latency_slows_every_api_request(sim):
    """A latency long enough that a busy machine cannot make an unslowed request look slowed."""
    put_faults(sim, {"latency_ms": 1000})
    started = time.perf_counter()
    assert sim.get("/api/systemusers").status_code == 200
    assert time.perf_counter() - started >= 1.0
    started = time.perf_counter()
    httpx.get(str(sim.base_url) + "/_sim/stats")
    assert time.perf_counter() - started < 1.0  # /_sim is never slowed


def test_faults_come_before_auth(sim):
    put_faults(sim, {"rules": [{"path": "^/api/", "status": 500, "times": 1}]})
    assert httpx.get(str(sim.base_url) + "/api/systemusers").status_code == 500


def test_invalid_config_is_refused_and_leaves_the_config_alone(sim):
    put_faults(sim, {"latency_ms": 5})
    for bad in ({"error_rate": 2}, {"rules": [{"path": "(", "status": 500}]}, {"rules": [{"status": 500}]},
                {"rate_limit": {"rps": 0}}, {"nonsense": 1}, {"error_statuses": [42]}):
        resp = put_faults(sim, bad)
        assert resp.status_code == 400 and resp.json()["message"], bad
    config = httpx.get(str(sim.base_url) + "/_sim/faults").json()
    assert config["latency_ms"] == 5 and config["error_rate"] == 0 and config["rules"] == []


def test_delete_resets_faults(sim):
    put_faults(sim, {"latency_ms": 5, "error_rate": 1.0, "rules": [{"path": "x", "status": 500}]})
    reset = httpx.delete(str(sim.base_url) + "/_sim/faults").json()
    assert (reset["latency_ms"], reset["error_rate"], reset["rules"], reset["rate_limit"]) == (0, 0, [], None)
    assert sim.get("/api/systemusers").status_code == 200


# ---- the token bucket, without a clock -----------------------------------------------------------------


def test_token_bucket_refills_at_rps():
    bucket = RateLimit(rps=10, burst=2)
    assert bucket.take(100.0) is None and bucket.take(100.0) is None
    wait = bucket.take(100.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(100.05) is not None
    assert bucket.take(100.2) is None


def test_the_plan_reports_the_reason():
    faults = Faults(rate_limit=RateLimit(rps=1, burst=1, retry_after="auto"))
    assert faults.plan("GET", "/api/x", now=10.0).decision is None
    decision = faults.plan("GET", "/api/x", now=10.2).decision
    assert decision is not None
    assert (decision.status, decision.reason, decision.retry_after) == (429, "rate_limit", "1")
