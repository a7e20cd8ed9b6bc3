"""Paging: paginators, page offsets, and the client's listing loop."""

from __future__ import annotations

import asyncio
import math
from itertools import pairwise

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jumpcloud import (
    BadResponseError,
    JumpCloudClient,
    NotFoundError,
    Paginator,
    V1EnvelopePaginator,
    V2HeaderPaginator,
    page_offsets,
)
from jumpcloud.paging import Page, Resume
from tests.support.fake_jumpcloud import FakeJumpCloud, collect, fake_client, json_response, run


def _resp(status=200, *, json=None, content=None, headers=None) -> httpx.Response:
    request = httpx.Request("GET", "https://console.jumpcloud.test/api/x")
    if json is not None:
        return httpx.Response(status, json=json, headers=headers, request=request)
    return httpx.Response(status, content=content or b"", headers=headers, request=request)


# -- paginators ---------------------------------------------------------------


def test_paginators_satisfy_protocol():
    assert isinstance(V1EnvelopePaginator(), Paginator)
    assert isinstance(V2HeaderPaginator(), Paginator)


def test_v1_reads_envelope():
    r = _resp(json={"totalCount": 3, "results": [{"_id": "a"}]})
    assert V1EnvelopePaginator().total(r) == 3
    assert V1EnvelopePaginator().records(r) == [{"_id": "a"}]


@pytest.mark.parametrize("body", [
    {"results": []},
    {"totalCount": "3", "results": []},
    {"totalCount": True, "results": []},
    {"totalCount": -1, "results": []},
    {"totalCount": 1.5, "results": []},
    {"totalCount": None, "results": []},
    [],
])
def test_v1_bad_total(body):
    with pytest.raises(BadResponseError) as info:
        V1EnvelopePaginator().total(_resp(json=body))
    assert info.value.status == 200 and info.value.path == "/api/x"


@pytest.mark.parametrize("body", [
    {"totalCount": 1},
    {"totalCount": 1, "results": None},
    {"totalCount": 1, "results": {"a": 1}},
    {"totalCount": 1, "results": ["x"]},
])
def test_v1_bad_results(body):
    with pytest.raises(BadResponseError):
        V1EnvelopePaginator().records(_resp(json=body))


def test_v1_missing_total_message():
    with pytest.raises(BadResponseError, match="totalCount"):
        V1EnvelopePaginator().total(_resp(json={"results": []}))


@pytest.mark.parametrize("content", [b"not json", b"<html>502</html>", b"", b"\xff\xfe{"])
def test_invalid_json(content):
    for paginator in (V1EnvelopePaginator(), V2HeaderPaginator()):
        with pytest.raises(BadResponseError, match="invalid JSON") as info:
            paginator.records(_resp(content=content, headers={"x-total-count": "1"}))
        # no exception context dragged along
        assert info.value.__context__ is None and info.value.__cause__ is None


def test_v2_reads_header():
    r = _resp(json=[{"id": "a"}], headers={"x-total-count": "42"})
    assert V2HeaderPaginator().total(r) == 42
    assert V2HeaderPaginator().records(r) == [{"id": "a"}]


@pytest.mark.parametrize("headers", [{}, {"x-total-count": ""}, {"x-total-count": "abc"},
                                     {"x-total-count": "-1"}, {"x-total-count": "1.5"},
                                     {"x-total-count": "١٢".encode()}])
def test_v2_bad_header(headers):
    with pytest.raises(BadResponseError, match="x-total-count"):
        V2HeaderPaginator().total(_resp(json=[], headers=headers))


@pytest.mark.parametrize("body", [{"results": []}, {"totalCount": 0}, [1, 2], "x"])
def test_v2_bad_body(body):
    with pytest.raises(BadResponseError):
        V2HeaderPaginator().records(_resp(json=body, headers={"x-total-count": "0"}))


# -- page offsets -------------------------------------------------------------


@given(total=st.integers(0, 100_000), page_size=st.integers(1, 100))
def test_page_offsets_cover_total_exactly(total, page_size):
    offsets = list(page_offsets(total, page_size))
    assert len(offsets) == math.ceil(total / page_size)
    assert all(0 <= skip < total for skip in offsets)
    assert offsets == sorted(set(offsets))
    covered = sum(min(page_size, total - skip) for skip in offsets)
    assert covered == total
    if offsets:
        assert offsets[0] == 0
        assert all(b - a == page_size for a, b in pairwise(offsets))


def test_page_offsets_examples():
    assert list(page_offsets(250, 100)) == [0, 100, 200]
    assert list(page_offsets(200, 100)) == [0, 100]
    assert list(page_offsets(0, 100)) == []
    with pytest.raises(ValueError):
        page_offsets(10, 0)


# -- the client's listing loop ------------------------------------------------


def _list(fake: FakeJumpCloud, path: str = "/api/systemusers", params=None, **kwargs):
    client, _ = fake_client(fake, **kwargs)

    async def go():
        async with client:
            lister = client.list_v2 if fake.v2 else client.list_v1
            return await collect(lister(path, params))

    return run(go()), client


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("total,skips", [
    (250, [0, 100, 200]),
    (200, [0, 100]),
    (0, [0]),
    (1, [0]),
    (100, [0]),
    (101, [0, 100]),
])
def test_listing_stops_exactly_at_total(v2, total, skips):
    fake = FakeJumpCloud(total, v2=v2)
    pages, client = _list(fake)
    assert sorted(fake.skips) == skips
    assert fake.skips[0] == 0  # the first page comes first, alone
    assert all(r.url.params["limit"] == "100" for r in fake.requests)
    if v2:
        assert all("sort" not in r.url.params for r in fake.requests)
    else:
        assert all(r.url.params["sort"] == "_id" for r in fake.requests)
    got = [rec["n"] for page in pages for rec in page]
    assert sorted(got) == list(range(total))
    assert all(page for page in pages)  # never an empty page yielded
    assert client.stats.requests == len(skips)


def test_v1_keeps_caller_sort_and_params():
    fake = FakeJumpCloud(150)
    _list(fake, params={"sort": "-created", "filter": "email:$eq:a@b.c"})
    assert [r.url.params["sort"] for r in fake.requests] == ["-created", "-created"]
    assert all(r.url.params["filter"] == "email:$eq:a@b.c" for r in fake.requests)


def test_v2_repeated_filter_params():
    fake = FakeJumpCloud(5, v2=True)
    _list(fake, "/api/v2/usergroups", params={"filter": ["name:eq:a", "type:eq:user_group"]})
    assert fake.requests[0].url.params.get_list("filter") == ["name:eq:a", "type:eq:user_group"]


def test_limit_and_skip_are_the_clients():
    fake = FakeJumpCloud(5)
    with pytest.raises(ValueError, match="limit"):
        _list(fake, params={"limit": 500})
    assert fake.requests == []


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_short_pages_when_data_shrinks(v2):
    # The first page says 450; by the time the others are fetched only 230 remain.
    fake = FakeJumpCloud(450, v2=v2, shrink_to=230)
    pages, _ = _list(fake)
    assert sorted(fake.skips) == [0, 100, 200, 300, 400]  # no extra page, no loop
    got = sorted(rec["n"] for page in pages for rec in page)
    assert len(got) == 100 + 100 + 30  # page 0 from the old data, then 100..229


def test_growing_data_uses_first_total():
    fake = FakeJumpCloud(150, shrink_to=900)  # "shrink" to more: data grew
    _list(fake)
    assert sorted(fake.skips) == [0, 100]


def test_smaller_page_size():
    fake = FakeJumpCloud(95, v2=True)
    pages, _ = _list(fake, page_size=10)
    assert sorted(fake.skips) == list(range(0, 95, 10))
    assert all(r.url.params["limit"] == "10" for r in fake.requests)
    assert sum(len(p) for p in pages) == 95


@pytest.mark.parametrize("size", [0, 101, 1000, -1])
def test_page_size_bounds(size):
    with pytest.raises(ValueError, match="page_size"):
        fake_client(FakeJumpCloud(0), page_size=size)


def test_pages_fetched_concurrently_and_bounded():
    fake = FakeJumpCloud(3000, delay=0.002)
    pages, _ = _list(fake, max_in_flight=4)
    assert fake.peak == 4
    assert sum(len(p) for p in pages) == 3000
    assert len(fake.requests) == 30


def test_fetch_window_bounded_while_consumer_is_slow():
    """A consumer that sits on a page does not let the client fetch the whole listing."""
    fake = FakeJumpCloud(10_000)
    client, _ = fake_client(fake, max_in_flight=3)

    async def go():
        async with client:
            pages = client.list_v1("/api/systemusers")
            seen = []
            async for page in pages:
                seen.append(page)
                for _ in range(50):  # let every fetch task run to completion
                    await asyncio.sleep(0)
                # first page + at most two windows (one done and buffered, one in flight)
                assert len(fake.requests) <= 1 + 3 * len(seen) + 3
                if len(seen) == 3:
                    break
            await pages.aclose()
            leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert leftovers == []

    run(go())
    assert len(fake.requests) < 20


def test_error_on_a_later_page_propagates_and_cancels_the_rest():
    async def handler(request):
        skip = int(request.url.params["skip"])
        await asyncio.sleep(0.01 if skip != 300 else 0)
        if skip == 300:
            return json_response(404, {"message": "gone"})
        return json_response(200, {"totalCount": 1000, "results": [{"_id": str(skip)}] * 100})

    client, _ = fake_client(handler, max_in_flight=8)

    async def go():
        async with client:
            with pytest.raises(NotFoundError):
                await collect(client.list_v1("/api/systemusers"))
            leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert leftovers == []

    run(go())


@pytest.mark.parametrize("v2,response,match", [
    (False, json_response(200, {"results": []}), "totalCount"),
    (False, httpx.Response(200, content=b"{oops"), "invalid JSON"),
    (True, json_response(200, []), "x-total-count"),
    (True, httpx.Response(200, content=b"[", headers={"x-total-count": "3"}), "invalid JSON"),
    (True, json_response(200, [], {"x-total-count": "many"}), "x-total-count"),
])
def test_bad_first_page_through_client(v2, response, match):
    calls = []

    def handler(request):
        calls.append(request)
        return response

    client, _ = fake_client(handler)

    async def go():
        async with client:
            lister = client.list_v2 if v2 else client.list_v1
            with pytest.raises(BadResponseError, match=match) as info:
                await collect(lister("/api/v2/usergroups" if v2 else "/api/systemusers"))
            assert info.value.method == "GET"

    run(go())
    assert len(calls) == 5  # a bad body is retried like a 5xx, up to max_attempts, then fails


def test_list_path_template():
    fake = FakeJumpCloud(3, v2=True)
    labels = []
    client, _ = fake_client(fake, on_response=lambda m, p, s, e: labels.append(p))

    async def go():
        async with client:
            return await collect(client.list_v2("/api/v2/usergroups/{id}/members",
                                                path_params={"id": "abc/../x"}))

    run(go())
    assert fake.requests[0].url.raw_path.startswith(b"/api/v2/usergroups/abc%2F..%2Fx/members?")
    assert labels == ["/api/v2/usergroups/{id}/members"]


@settings(max_examples=40, deadline=None)
@given(total=st.integers(0, 750), page_size=st.integers(1, 100), in_flight=st.integers(1, 8),
       v2=st.booleans())
def test_listing_property(total, page_size, in_flight, v2):
    fake = FakeJumpCloud(total, v2=v2)
    client, _ = fake_client(fake, page_size=page_size, max_in_flight=in_flight)

    async def go():
        async with client:
            lister = client.list_v2 if v2 else client.list_v1
            return await collect(lister("/api/x"))

    pages = run(go())
    expected = list(page_offsets(total, page_size)) or [0]
    assert sorted(fake.skips) == expected
    assert fake.peak <= in_flight
    assert sorted(r["n"] for p in pages for r in p) == list(range(total))


def test_list_pages_with_custom_paginator():
    class Wrapped:
        """An endpoint shaped {"data": [...], "count": N}: pluggable paging."""

        def records(self, response):
            return response.json()["data"]

        def total(self, response):
            return response.json()["count"]

    def handler(request):
        skip = int(request.url.params["skip"])
        return json_response(200, {"count": 120, "data": [{"i": i} for i in range(skip, min(skip + 100, 120))]})

    client, _ = fake_client(handler)

    async def go():
        async with client:
            return await collect(client.list_pages("/api/custom", Wrapped()))

    pages = run(go())
    assert sum(len(p) for p in pages) == 120
    assert isinstance(client, JumpCloudClient)


def test_a_bad_body_then_a_good_one_recovers():
    answers = [httpx.Response(200, content=b'{"totalCount": 2, "resu'),
               json_response(200, {"totalCount": 2, "results": [{"_id": "a"}, {"_id": "b"}]})]

    def handler(request):
        return answers.pop(0)

    client, _ = fake_client(handler)

    async def go():
        async with client:
            pages = await collect(client.list_v1("/api/systemusers"))
            assert [r["_id"] for page in pages for r in page] == ["a", "b"]
            assert client.stats.retries == 1 and client.stats.inconsistent_pages == 0

    run(go())


@pytest.mark.parametrize("first_total, later_total, rows_on_page_two, inconsistent", [
    (150, 150, 50, 0),   # consistent
    (150, 147, 47, 1),   # records removed while listing: totals differ
    (150, 150, 40, 1),   # a short page
    (140, 140, 50, 1),   # the first total was too low: a page has more rows than it could
])
def test_inconsistent_listings_are_counted(first_total, later_total, rows_on_page_two, inconsistent):
    def handler(request):
        skip = int(request.url.params["skip"])
        if skip == 0:
            return json_response(200, {"totalCount": first_total, "results": [{"_id": str(i)} for i in range(100)]})
        return json_response(200, {"totalCount": later_total,
                                   "results": [{"_id": f"p{i}"} for i in range(rows_on_page_two)]})

    client, _ = fake_client(handler)

    async def go():
        async with client:
            await collect(client.list_v1("/api/systemusers"))
            assert client.stats.inconsistent_pages == inconsistent

    run(go())


# -- resuming a listing ----------------------------------------------------------


def _resumed(fake: FakeJumpCloud, resume: Resume, **kwargs):
    client, _ = fake_client(fake, **kwargs)

    async def go():
        async with client:
            return await collect(client.list_v1("/api/systemusers", resume=resume))

    return run(go()), client


def test_a_resumed_listing_requests_page_zero_and_the_pages_not_done():
    fake = FakeJumpCloud(450)
    pages, client = _resumed(fake, Resume(page_size=100, total=450, done=frozenset({0, 200})))
    assert sorted(fake.skips) == [0, 100, 300, 400]  # page 0 for the total, but not yielded again
    assert sorted(page.skip for page in pages) == [100, 300, 400]
    assert all(page.total == 450 for page in pages)
    assert client.stats.inconsistent_pages == 0


def test_a_resume_at_another_page_size_lists_everything():
    fake = FakeJumpCloud(95)
    pages, _ = _resumed(fake, Resume(page_size=100, total=95, done=frozenset({0})), page_size=10)
    assert sorted(page.skip for page in pages) == list(range(0, 95, 10))


def test_a_resume_whose_total_moved_counts_the_listing_as_changed():
    fake = FakeJumpCloud(300)
    pages, client = _resumed(fake, Resume(page_size=100, total=250, done=frozenset({100})))
    assert sorted(page.skip for page in pages) == [0, 200]  # still resumed: what was written stays written
    assert client.stats.inconsistent_pages == 1  # but an absence proves nothing: deletions deferred


def test_page_map_keeps_where_the_page_stands():
    page = Page([1, 2], skip=200, total=250).map(str)
    assert page == ["1", "2"] and (page.skip, page.total) == (200, 250)
