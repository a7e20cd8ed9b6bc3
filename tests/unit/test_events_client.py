"""The Directory Insights client (jumpcloud.events): paging against the simulator over real HTTP, retries of the
query POST, and clear errors for pages that break the documented contract (small MockTransport cases)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from jumpcloud import JumpCloudClient
from jumpcloud.errors import BadResponseError
from jumpcloud.events import EVENTS_PATH, event_pages, event_query, events_base_url_for, read_page
from jumpcloud.retry import RetryPolicy
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "events-client-key-0c3a"


def run(coro):
    return asyncio.run(coro)


async def read_all(client: JumpCloudClient, start: datetime, end: datetime, limit: int) -> list[list[dict]]:
    return [page.events async for page in event_pages(client, start, end, limit=limit)]


@pytest.mark.parametrize("base_url, events_url", [
    ("https://console.jumpcloud.com", "https://api.jumpcloud.com"),
    ("https://console.eu.jumpcloud.com/", "https://api.eu.jumpcloud.com"),
    ("https://Console.IN.jumpcloud.com", "https://api.in.jumpcloud.com"),
    ("http://127.0.0.1:8089", "http://127.0.0.1:8089"),
    ("https://jumpcloud-proxy.example.org/jc", "https://jumpcloud-proxy.example.org/jc"),
])
def test_the_events_host_follows_the_console_host(base_url, events_url):
    assert events_base_url_for(base_url) == events_url


def test_pages_are_read_until_the_short_one_against_the_simulator():
    tenant = generate_tenant(TenantSpec(seed=5, users=10, admins=1, groups=3, apps=1))
    group = next(iter(tenant.groups))
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)).start() as srv:
        for n in range(25):
            tenant.update_group(group, {"name": f"name {n}"})
        start = datetime.now(UTC) - timedelta(minutes=1)
        end = datetime.now(UTC) + timedelta(seconds=1)

        async def main():
            async with JumpCloudClient(base_url=srv.url, api_key=KEY) as client:
                pages = await read_all(client, start, end, limit=10)
                exact = await read_all(client, start, end, limit=25)
                return pages, exact, client.stats.requests

        pages, exact, requests = run(main())
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [e["changes"][0]["to"] for p in pages for e in p] == [f"name {n}" for n in range(25)]
        assert [len(p) for p in exact] == [25, 0]  # a full last page costs one more, empty, request
        assert requests == 5
        assert srv.state.stats.by_route["POST /insights/directory/v1/events"] == 5


def test_the_query_post_is_retried_like_a_read():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        if len(calls) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json=[], headers={"X-Result-Count": "0", "X-Limit": "1000",
                                                     "X-Search_after": "[]"})

    async def main():
        policy = RetryPolicy(max_attempts=3, base_delay=0, retry_non_idempotent=False)
        async with JumpCloudClient(base_url="https://api.jumpcloud.com", api_key="k" * 40, retry=policy,
                                   transport=httpx.MockTransport(handler)) as client:
            now = datetime.now(UTC)
            return [p async for p in event_pages(client, now - timedelta(minutes=5), now)]

    pages = run(main())
    assert len(calls) == 2 and calls[0] == calls[1] and pages[0].last and pages[0].events == []
    assert calls[0]["service"] == ["directory"] and calls[0]["sort"] == "ASC" and calls[0]["end_time"].endswith("Z")


def _response(body, **headers) -> httpx.Response:
    request = httpx.Request("POST", "https://api.jumpcloud.com" + EVENTS_PATH)
    return httpx.Response(200, json=body, headers=headers, request=request)


@pytest.mark.parametrize("body, headers, message", [
    ({"events": []}, {"X-Result-Count": "0", "X-Limit": "10"}, "not a JSON array of objects"),
    ([{"id": "a"}], {"X-Limit": "10"}, "X-Result-Count header is None"),
    ([{"id": "a"}], {"X-Result-Count": "1", "X-Limit": "ten"}, "X-Limit header is 'ten'"),
    ([{"id": "a"}], {"X-Result-Count": "2", "X-Limit": "10", "X-Search_after": "[1,\"a\"]"}, "holds 1 events"),
    ([{"id": "a"}], {"X-Result-Count": "1", "X-Limit": "10"}, "X-Search_after is None"),
    ([{"id": "a"}], {"X-Result-Count": "1", "X-Limit": "10", "X-Search_after": "[1,"}, "expected a JSON array"),
])
def test_a_page_that_breaks_the_contract_is_a_bad_response(body, headers, message):
    with pytest.raises(BadResponseError, match=message):
        read_page(_response(body, **headers))


def test_counts_are_numbers_not_strings():
    """'9' < '10' as strings would end the read early; as numbers a page of 9 of a limit of 10 is the last."""
    page = read_page(_response([{"id": str(i)} for i in range(9)], **{"X-Result-Count": "9", "X-Limit": "10",
                                                                     "X-Search_after": "[1,\"8\"]"}))
    assert page.last and page.search_after == [1, "8"]
    full = read_page(_response([{"id": str(i)} for i in range(10)], **{"X-Result-Count": "10", "X-Limit": "10",
                                                                      "X-Search_after": "[2,\"9\"]"}))
    assert not full.last


def test_a_token_that_does_not_move_stops_the_read():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": "a"}], headers={"X-Result-Count": "1", "X-Limit": "1",
                                                                "X-Search_after": "[1,\"a\"]"})

    async def main():
        async with JumpCloudClient(base_url="https://api.jumpcloud.com", api_key="k" * 40,
                                   transport=httpx.MockTransport(handler)) as client:
            now = datetime.now(UTC)
            return [p async for p in event_pages(client, now - timedelta(minutes=5), now, limit=1)]

    with pytest.raises(BadResponseError, match="did not move"):
        run(main())


def test_bad_query_bounds_are_refused_before_any_request():
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="limit"):
        event_query(now - timedelta(1), now, limit=10_001)
    with pytest.raises(ValueError, match="end must be after start"):
        event_query(now, now)
