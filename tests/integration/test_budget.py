"""The connector budget in Redis holds across clients: shared requests in flight and requests per second,
measured on the simulator's side; a slot held by a dead process expires."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from jumpcloud.budget import BudgetUnavailableError, RedisBudget
from jumpcloud.client import JumpCloudClient
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY
from tests.support.servers import RedisServer


async def _list_users(url: str, budget: RedisBudget | None, times: int) -> None:
    async with JumpCloudClient(base_url=url, api_key=TEST_API_KEY, max_in_flight=8, limiter=budget) as client:
        for _ in range(times):
            async for _page in client.list_v1("/api/systemusers"):
                pass


def _fleet(url: str, redis_url: str | None, clients: int, times: int, **limits) -> float:
    """``clients`` clients at once, each with its own Redis connection, as separate workers have."""
    async def go():
        budgets = [RedisBudget(redis_url, "acme", **limits) if redis_url else None for _ in range(clients)]
        await asyncio.gather(*(_list_users(url, budget, times) for budget in budgets))

    started = time.monotonic()
    asyncio.run(go())
    return time.monotonic() - started


def test_shared_in_flight_bound(redis_url, simulator):
    sim = simulator(TenantSpec(seed=91, users=800, admins=1, groups=1, apps=1))
    sim.set_faults({"latency_ms": 60})
    _fleet(sim.url, None, clients=3, times=1)
    assert sim.stats()["max_in_flight"] > 4  # without a budget, three clients open more than four
    sim.reset_stats()
    _fleet(sim.url, redis_url, clients=3, times=1, max_in_flight=4)
    stats = sim.stats()
    assert stats["requests"] == 3 * 8 and 2 <= stats["max_in_flight"] <= 4, stats


def _script_calls(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


@pytest.fixture
def own_redis_url(tmp_path):
    """A Redis server of this test's own: its script calls are counted server-wide, so no other test's
    processes (a beat's lock, another connector's budget) may use it meanwhile."""
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.stop()


def test_shared_rate(own_redis_url, simulator):
    redis_url = own_redis_url
    sim = simulator(TenantSpec(seed=92, users=100, admins=1, groups=1, apps=1))
    client = redis.Redis.from_url(redis_url)
    client.delete("jumpsync:budget:acme:rate")
    calls = _script_calls(client)
    took = _fleet(sim.url, redis_url, clients=3, times=10, rate=20.0)  # 30 requests, 20/s, burst 20
    assert sim.stats()["requests"] == 30
    assert took >= (30 - 20) / 20 * 0.9, took
    # one budget call a request, even for those that waited (plus a script load per client): no retry storm
    assert _script_calls(client) - calls <= 30 + 3


def test_a_dead_holders_slot_expires(redis_url, simulator):
    sim = simulator(TenantSpec(seed=93, users=10, admins=1, groups=1, apps=1))
    client = redis.Redis.from_url(redis_url)
    key = "jumpsync:budget:acme:in-flight"
    client.delete(key)
    now = float(client.time()[0])
    client.zadd(key, {"dead-worker": now + 1.5})  # a process died holding the only slot
    took = _fleet(sim.url, redis_url, clients=1, times=1, max_in_flight=1)
    assert took >= 0.5 and sim.stats()["requests"] == 1
    assert client.zcard(key) == 0  # the expired slot was dropped, ours released


def test_requests_wait_out_a_redis_restart(tmp_path, simulator):
    """Redis stopped for a second and a half while three clients list through the budget: no request fails;
    those that found Redis gone waited for it (issue 27: a broker restart failed provisioning requests)."""
    server = RedisServer(tmp_path / "redis").start()
    sim = simulator(TenantSpec(seed=94, users=100, admins=1, groups=1, apps=1))
    sim.set_faults({"latency_ms": 50})

    def restart() -> None:
        time.sleep(0.5)
        server.stop()
        time.sleep(1.5)
        server.start()

    restarter = threading.Thread(target=restart)
    restarter.start()
    try:
        took = _fleet(sim.url, server.url, clients=3, times=12, max_in_flight=2, rate=50.0)
    finally:
        restarter.join()
        server.stop()
    assert sim.stats()["requests"] == 3 * 12
    assert took >= 1.5  # some waited for Redis


def test_a_redis_gone_for_good_fails_the_request_unsent(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    budget = RedisBudget(server.url, "acme", rate=10.0, outage_grace=0.5)
    server.stop()

    async def take() -> None:
        try:
            async with budget.slot():
                raise AssertionError("a slot taken without Redis")
        finally:
            await budget.aclose()

    with pytest.raises(BudgetUnavailableError, match="connector 'acme'.*did not answer.*not sent"):
        asyncio.run(take())
