"""Fakes for the JumpCloud client unit tests: a client over a mock transport, a fake listing API.

``FakeJumpCloud`` is a tiny in-process stand-in for the listing endpoints,
served through ``httpx.MockTransport``: it records every request so tests can
assert exactly which pages were asked for. Backoff sleeps are recorded, never
slept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from jumpcloud import JumpCloudClient, RetryPolicy

KEY = "jc-test-KEY-5f0c2a9e8b7d4c3a"
BASE = "https://console.jumpcloud.test"


class Sleeps:
    """An injectable ``sleep`` that records the requested waits and yields
    to the loop once (so concurrency still interleaves) without waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def fake_client(handler: Callable, **kwargs: Any) -> tuple[JumpCloudClient, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("base_url", BASE)
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("sleep", sleeps)
    kwargs.setdefault("retry", RetryPolicy(rng=lambda: 0.5))
    client = JumpCloudClient(transport=httpx.MockTransport(handler), **kwargs)
    return client, sleeps


def run(coro):
    return asyncio.run(coro)


async def collect(pages) -> list[list[dict]]:
    return [page async for page in pages]


class FakeJumpCloud:
    """Serves ``total`` records on a v1 (envelope) or v2 (header) listing.

    ``shrink_to`` makes the data "change" after the first page: later pages
    only see that many records, as when users are deleted mid-listing.
    """

    def __init__(self, total: int, *, v2: bool = False, shrink_to: int | None = None,
                 delay: float = 0.0) -> None:
        self.total = total
        self.v2 = v2
        self.shrink_to = shrink_to
        self.delay = delay
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.peak = 0

    @property
    def skips(self) -> list[int]:
        return [int(r.url.params["skip"]) for r in self.requests]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
            limit = int(request.url.params.get("limit", 10))
            skip = int(request.url.params.get("skip", 0))
            size = self.total if len(self.requests) == 1 or self.shrink_to is None else self.shrink_to
            ids = list(range(size))[skip: skip + min(limit, 100)]
            records = [{"_id": f"{i:024x}", "id": f"{i:024x}", "n": i} for i in ids]
            if self.v2:
                return httpx.Response(200, json=records, headers={"x-total-count": str(size)})
            return httpx.Response(200, json={"totalCount": size, "results": records})
        finally:
            self.in_flight -= 1


def json_response(status: int, body: Any, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={
        "content-type": "application/json", **(headers or {})})
