"""How to read records and the total out of a page of a JumpCloud listing.

JumpCloud has two listing shapes (see /work/shared/jumpcloud-api.md):

* v1 (``/api/...``): a JSON object ``{"totalCount": N, "results": [...]}``;
* v2 (``/api/v2/...``): a bare JSON array, the total in ``x-total-count``.

Both page with ``limit``/``skip``. As in singer-sdk, the shape is a pluggable
*paginator* so that the client's paging loop (first page, then the rest
concurrently, never past the total) is written once. Knowing the total up
front is what lets the client fetch pages concurrently and never ask for an
empty trailing page, so a missing or malformed total is an error
(``BadResponseError``), not something to guess around.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx
import orjson

from .errors import BadResponseError

__all__ = [
    "ConcurrentPages",
    "Page",
    "Paginator",
    "Resume",
    "V1EnvelopePaginator",
    "V2HeaderPaginator",
    "page_offsets",
    "parse_json",
]


T = TypeVar("T")
U = TypeVar("U")


class Page(list[T]):
    """The records of one page of a listing, knowing where it stands: its ``skip`` and the listing's ``total``.

    A list, so that a caller that wants only the records (``connector.base.collect``) uses it as one; a sync part
    records the pages it has written by their skip (its checkpoint, ``pipeline.checkpoint``).
    """

    def __init__(self, records: Iterable[T], skip: int, total: int) -> None:
        super().__init__(records)
        self.skip = skip
        self.total = total

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        """The same page with every record converted (a syncer's mapping to its records)."""
        return Page([convert(record) for record in self], self.skip, self.total)


@dataclass(frozen=True)
class Resume:
    """Where an earlier attempt at the same listing stands: the pages (by skip) it wrote completely, at the page
    size and total it listed with. A listing resumed from it requests none of those pages again, but the first
    (where the total is learned; yielded only if not done). If the total is no longer the same, the data moved
    since: the pages are listed as planned and the listing counts as inconsistent (deletions deferred). A page
    size not the client's cannot be resumed: everything is listed again."""

    page_size: int
    total: int
    done: frozenset[int]


def _bad(response: httpx.Response, message: str) -> BadResponseError:
    request = response.request
    return BadResponseError(response.status_code, request.method, request.url.path, message)


def parse_json(response: httpx.Response) -> Any:
    """The response body as JSON, or BadResponseError (never a bare ValueError)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass  # what orjson refuses but json reads (NaN, a lone surrogate, an integer past 64 bits) is still JSON
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        content_type = response.headers.get("content-type", "?")
        # Raised outside the except block so no exception context is attached.
        error = _bad(response, f"invalid JSON ({content_type}): {exc.__class__.__name__}: {exc}")
    raise error


def _records(response: httpx.Response, items: Any, where: str) -> list[dict]:
    if not isinstance(items, list):
        raise _bad(response, f"{where} is {type(items).__name__}, expected a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(response, f"{where}[{index}] is {type(item).__name__}, expected an object")
    return items


def _valid_total(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@runtime_checkable
class Paginator(Protocol):
    """Reads one page of a listing. Both methods raise BadResponseError when
    the response does not have the expected shape."""

    def records(self, response: httpx.Response) -> list[dict]:
        """The records on this page."""
        ...

    def total(self, response: httpx.Response) -> int:
        """The number of records in the whole listing."""
        ...


class V1EnvelopePaginator:
    """v1 listings: ``{"totalCount": N, "results": [...]}`` (totalCount is on
    every page, also an empty one)."""

    def _envelope(self, response: httpx.Response) -> dict:
        body = parse_json(response)
        if not isinstance(body, dict):
            raise _bad(response, f"expected a {{totalCount, results}} object, got {type(body).__name__}")
        return body

    def records(self, response: httpx.Response) -> list[dict]:
        body = self._envelope(response)
        if "results" not in body:
            raise _bad(response, "envelope has no results")
        return _records(response, body["results"], "results")

    def total(self, response: httpx.Response) -> int:
        body = self._envelope(response)
        if "totalCount" not in body:
            raise _bad(response, "envelope has no totalCount")
        value = body["totalCount"]
        if not _valid_total(value):
            raise _bad(response, f"totalCount is {value!r}, expected an integer >= 0")
        return value

    def __repr__(self) -> str:
        return "V1EnvelopePaginator()"


class V2HeaderPaginator:
    """v2 listings: a bare JSON array, the total in the ``x-total-count`` header."""

    header = "x-total-count"

    def records(self, response: httpx.Response) -> list[dict]:
        return _records(response, parse_json(response), "body")

    def total(self, response: httpx.Response) -> int:
        raw = response.headers.get(self.header)
        if raw is None:
            raise _bad(response, f"no {self.header} header")
        text = raw.strip()
        if not text.isascii() or not text.isdigit():
            raise _bad(response, f"{self.header} header is {raw!r}, expected an integer >= 0")
        return int(text)

    def __repr__(self) -> str:
        return "V2HeaderPaginator()"


def page_offsets(total: int, page_size: int) -> range:
    """The ``skip`` of every page needed to list ``total`` records.

    ``range(0, total, page_size)``: every offset is below the total (no empty
    trailing page) and the pages cover every record exactly once. For
    ``total == 0`` it is empty; the client always fetches the first page
    anyway, since that is where it learns the total.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    if total < 0:
        raise ValueError("total must be >= 0")
    return range(0, total, page_size)


class ConcurrentPages:
    """The pages after the first of a listing, fetched concurrently.

    At most ``max_in_flight`` fetches run at a time, so that memory stays
    bounded; ``start`` sets the first ones going (before the caller works on
    the first page), ``completed`` yields the non-empty pages as they finish
    (order not guaranteed) and raises the first failure, ``cancel`` stops
    what is still running. ``fetch`` takes a ``skip`` and returns the page's
    records.

    An empty page ends the listing: no page after it is requested, and those
    already in flight are cancelled. The total comes from the server, and one
    that is wrong (the data shrank while listing, or a hostile or broken
    server answering 10^15) must not page on through empty pages.
    """

    def __init__(self, fetch: Callable[[int], Awaitable[Page[dict]]], skips: Iterable[int],
                 max_in_flight: int) -> None:
        self._fetch = fetch
        self._remaining = iter(skips)
        self._max_in_flight = max_in_flight
        self._pending: dict[asyncio.Future[Page[dict]], int] = {}  # fetch -> its skip
        self.ended_early_at: int | None = None  # the skip of the empty page that ended the listing

    def start(self) -> None:
        """Start fetches until ``max_in_flight`` run or no page is left."""
        while len(self._pending) < self._max_in_flight and self.ended_early_at is None:
            skip = next(self._remaining, None)
            if skip is None:
                return
            self._pending[asyncio.ensure_future(self._fetch(skip))] = skip

    async def completed(self) -> AsyncIterator[Page[dict]]:
        """The records of each page as its fetch completes, empty pages left out."""
        while self._pending:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            skips = {task: self._pending.pop(task) for task in done}
            failed = [error for task in done if (error := task.exception()) is not None]
            if failed:
                raise failed[0]
            empty = [skip for task, skip in skips.items() if not task.result()]
            if empty:
                await self._end_at(min(empty))
            self.start()
            for task in done:
                page = task.result()
                if page:
                    yield page

    async def _end_at(self, skip: int) -> None:
        """No page at or after ``skip``: cancel those in flight beyond it, start none."""
        self.ended_early_at = skip if self.ended_early_at is None else min(self.ended_early_at, skip)
        beyond = [task for task, at in self._pending.items() if at > self.ended_early_at]
        for task in beyond:
            task.cancel()
            del self._pending[task]
        if beyond:
            await asyncio.gather(*beyond, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel the fetches still running and wait until they have stopped."""
        for task in self._pending:
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
