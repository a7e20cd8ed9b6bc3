"""The async JumpCloud API client (httpx, over aiohttp: ``transport.py``).

One client per org and per event loop (httpx connection pools and the
asyncio semaphore belong to the loop they were first used on): a sync part
creates it inside its ``asyncio.run`` and closes it at the end; a provisioning
worker process keeps one per connector on its own long-lived loop
(``provisioning.clients``). The SSLContext is shared by every client of a
process (``tls.shared_ssl_context``).

What it takes care of, so that connectors only name endpoints:

* auth headers (``x-api-key``, ``x-org-id``; ``credentials.py``), a base URL
  that keeps the key off clear-text networks (``urls.py``), and JSON content
  negotiation;
* retries of 429/5xx/transport failures with jittered backoff (``retry.py``);
* a bound on requests in flight (an ``asyncio.Semaphore``; a request waiting
  out a backoff gives its slot back, so one throttled request does not stall
  the others);
* paging v1 envelopes and v2 bare arrays (``paging.py``): first page, then the
  rest concurrently, never past the total;
* mapping failures to ``jumpcloud.errors`` without ever putting the API key
  in an error, a repr or an exception chain (``failures.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import httpx

from . import errors
from .credentials import ApiKeyAuth, check_api_key, check_org_header, scrub
from .failures import response_error, transport_error
from .limits import Limiter
from .paging import (
    ConcurrentPages,
    Page,
    Paginator,
    Resume,
    V1EnvelopePaginator,
    V2HeaderPaginator,
    page_offsets,
    parse_json,
)
from .retry import RetryPolicy, is_retryable_transport, may_have_arrived
from .tls import Verify, ssl_context
from .urls import check_base_url, path_label, resolve_path

__all__ = ["JumpCloudClient", "ClientStats", "MAX_PAGE_SIZE", "USER_AGENT", "preload"]

log = logging.getLogger(__name__)

#: JumpCloud's documented maximum ``limit``; what it does above it is unknown.
MAX_PAGE_SIZE = 100


def _version() -> str:
    try:
        return metadata.version("jumpsync")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


USER_AGENT = f"jumpsync/{_version()}"

OnResponse = Callable[[str, str, "int | str", float], None]


@dataclass
class ClientStats:
    """Counters for one client, read by the pipeline for run statistics.

    ``requests`` counts every HTTP attempt (retries included), ``retries`` the
    attempts that were repeats, ``by_status`` the outcome of every attempt (an
    int status, or ``"transport"`` when no response came), ``throttled`` the
    429 answers. ``inconsistent_pages`` counts listing pages whose size or total
    disagreed with the listing's first page: the data changed while it was read
    (or the first total was wrong), so the listing may have missed records and
    must not be used to conclude that anything was deleted.
    """

    requests: int = 0
    retries: int = 0
    by_status: Counter[int | str] = field(default_factory=Counter)
    throttled: int = 0
    inconsistent_pages: int = 0


def _check_limits(max_in_flight: int, page_size: int, timeout: float) -> None:
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError("max_in_flight must be an integer >= 1")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}")
    if not timeout or timeout <= 0:
        raise ValueError("timeout must be > 0")


def preload() -> None:
    """Load now what the first client of a process loads: its transport (aiohttp, imported at the first client)
    and the shared TLS context of the default CAs (``tls``: parsing the CA bundle). A worker calls it before it
    forks its pool (``worker.signals``): each pool process then starts with them, its pages shared, instead of
    paying for them in its first sync part."""
    from . import transport  # noqa: F401  (aiohttp, yarl, multidict)

    ssl_context(True)


def _default_transport(context: ssl.SSLContext, max_connections: int) -> httpx.AsyncBaseTransport:
    """aiohttp under httpx (``transport``), imported at the first client: a command that makes no request does
    not pay for importing it."""
    from .transport import AiohttpTransport

    return AiohttpTransport(ssl_context=context, max_connections=max_connections)


class JumpCloudClient:
    """Async client for the JumpCloud v1 and v2 APIs.

    Use as ``async with JumpCloudClient(...) as client:`` or call ``aclose()``.
    ``transport`` replaces the network (tests: ``httpx.MockTransport``);
    ``sleep`` replaces ``asyncio.sleep`` for backoff waits; ``on_response`` is
    called after every attempt with ``(method, path_template_or_path, status,
    elapsed_seconds)`` where status is an int or ``"transport"``.

    Paths are relative to ``base_url`` and must start with "/". A path may be a
    template such as ``"/api/v2/usergroups/{id}/members"`` when ``path_params``
    fills it (values are URL-quoted); ``on_response`` then receives the
    template, which keeps metrics labels few.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        org_id: str | None = None,
        timeout: float = 30.0,
        max_in_flight: int = 8,
        retry: RetryPolicy | None = None,
        verify: Verify = True,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = MAX_PAGE_SIZE,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_response: OnResponse | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        url = check_base_url(base_url)
        key = check_api_key(api_key)
        org_id = check_org_header(org_id)
        _check_limits(max_in_flight, page_size, timeout)

        self.base_url = str(url)
        self.org_id = org_id
        self.max_in_flight = max_in_flight
        self.page_size = page_size
        self.timeout = timeout  # seconds for one attempt of a request, in total
        self.retry = retry if retry is not None else RetryPolicy()
        self.stats = ClientStats()
        self.on_response = on_response
        self._key = key  # only used to scrub server messages; see _scrub
        self._sleep = sleep
        self._slots = asyncio.Semaphore(max_in_flight)
        self._limiter = limiter

        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if org_id:
            headers["x-org-id"] = org_id
        self._http = httpx.AsyncClient(
            base_url=url,
            auth=ApiKeyAuth(key),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport if transport is not None else _default_transport(ssl_context(verify), max_in_flight),
            # Never follow redirects: httpx only strips Authorization on a
            # cross-origin redirect, not x-api-key.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"JumpCloudClient(base_url={self.base_url!r}, org_id={self.org_id!r})"

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> JumpCloudClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (and the transport, if one was given), and the limiter."""
        await self._http.aclose()
        if self._limiter is not None:
            await self._limiter.aclose()

    # -- requests ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: never let the key through, even if a server or a
        library echoes it."""
        return scrub(text, self._key)

    def _observe(self, method: str, label: str, status: int | str, elapsed: float) -> None:
        self.stats.requests += 1
        self.stats.by_status[status] += 1
        if status == 429:
            self.stats.throttled += 1
        if self.on_response is not None:
            try:
                self.on_response(method, label, status, elapsed)
            except Exception:  # metrics must never break a sync
                log.exception("on_response hook failed")

    async def _send(
        self, method: str, concrete: str, query: Mapping[str, Any] | None, json: Any
    ) -> tuple[httpx.Response | None, httpx.RequestError | None, float]:
        """One HTTP attempt inside a slot of the client (and of the limiter): (response, None, elapsed), or
        (None, the transport failure, elapsed)."""
        async with self._slots, (self._limiter.slot() if self._limiter else contextlib.nullcontext()):
            started = time.monotonic()
            try:
                # httpx's timeout bounds each read; a body dripping a byte at a time would never trip it. The
                # whole attempt (connect, send, every read) gets the same time in total.
                async with asyncio.timeout(self.timeout):
                    response = await self._http.request(method, concrete, params=query, json=json)
            except httpx.RequestError as exc:
                return None, exc, time.monotonic() - started
            except TimeoutError:
                return None, httpx.ReadTimeout(f"no complete response within {self.timeout:g}s"), \
                    time.monotonic() - started
            return response, None, time.monotonic() - started

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        path_params: Mapping[str, Any] | None = None,
        reads_only: bool = False,
    ) -> httpx.Response:
        """Send a request, retrying per the policy; return the 2xx response.

        Raises a ``jumpcloud.errors`` error for anything else. ``json=None``
        sends no body (pass ``{}`` for an empty object). ``params`` values of
        None are dropped; list values repeat the parameter. ``reads_only``: a
        POST that changes nothing (a Directory Insights query) is retried as a
        GET would be.
        """
        method = method.upper()
        concrete, label = resolve_path(path, path_params)
        where = path_label(concrete)
        query = {k: v for k, v in params.items() if v is not None} if params else None
        policy = self.retry
        may_repeat = policy.may_repeat(method, reads_only)
        writes = method not in ("GET", "HEAD") and not reads_only
        lost_answer = False  # a write sent again after a send that may have been applied, its answer lost
        attempt = 0
        while True:
            attempt += 1
            response, failure, elapsed = await self._send(method, concrete, query, json)
            last = attempt >= policy.max_attempts

            if failure is not None:
                self._observe(method, label, "transport", elapsed)
                if last or not is_retryable_transport(failure, may_repeat):
                    given_up = transport_error(failure, method, where, attempt, self._scrub)
                    failure = None  # the error's traceback keeps this frame: not the original, which holds the key
                    raise given_up
                lost_answer = lost_answer or (writes and may_have_arrived(failure))
                wait = policy.delay(attempt, None)
                self._log_retry(method, where, type(failure).__name__, attempt, wait)
                failure = None  # drop it now: it holds the request (and its headers)
                await self._backoff(wait)
                continue

            assert response is not None
            status = response.status_code
            self._observe(method, label, status, elapsed)
            if 200 <= status <= 299:
                return response
            if last or not (policy.is_retryable(status) and (may_repeat or status == 429)):
                error = response_error(response, method, where, attempt, self._scrub)
                error.after_lost_answer = lost_answer
                raise error
            wait = policy.delay(attempt, response.headers.get("retry-after"))
            self._log_retry(method, where, str(status), attempt, wait)
            await response.aclose()
            await self._backoff(wait)

    def _log_retry(self, method: str, where: str, what: str, attempt: int, wait: float) -> None:
        log.warning(
            "%s %s: %s, retrying in %.2fs (attempt %d of %d)",
            method, where, what, wait, attempt + 1, self.retry.max_attempts,
        )

    async def _backoff(self, wait: float) -> None:
        # Called outside the semaphore: a waiting request holds no slot.
        self.stats.retries += 1
        if wait > 0:
            await self._sleep(wait)
        else:
            await self._sleep(0)

    async def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
    ) -> Any:
        """GET and parse the JSON body (None for an empty 204 body)."""
        response = await self.request("GET", path, params=params, path_params=path_params)
        if response.status_code == 204 or not response.content:
            return None
        return parse_json(response)

    # -- listings ------------------------------------------------------------

    def list_v1(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
        resume: Resume | None = None,
    ) -> AsyncIterator[Page[dict]]:
        """Pages of a v1 listing (``{"totalCount", "results"}``), sorted by
        ``_id`` unless ``params`` has a ``sort``, so that skip paging neither
        misses nor repeats records when the data changes meanwhile."""
        query = dict(params or {})
        query.setdefault("sort", "_id")
        return self.list_pages(path, V1EnvelopePaginator(), query, path_params=path_params, resume=resume)

    def list_v2(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
        resume: Resume | None = None,
    ) -> AsyncIterator[Page[dict]]:
        """Pages of a v2 listing (bare array, total in ``x-total-count``)."""
        return self.list_pages(path, V2HeaderPaginator(), params, path_params=path_params, resume=resume)

    async def list_pages(
        self,
        path: str,
        paginator: Paginator,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
        resume: Resume | None = None,
    ) -> AsyncIterator[Page[dict]]:
        """Yield the records of every page of a listing, one ``Page`` per page.

        Fetches the first page (skip=0) to learn the total, then the other
        pages concurrently, at most ``max_in_flight`` page fetches at a time so
        that memory stays bounded, and yields pages as they complete (order not
        guaranteed). Never requests a page at ``skip >= total``; an empty
        listing costs exactly one request. Empty pages are not yielded. If the
        data changed during the listing and a page comes back short, what came
        is yielded and no extra page is fetched: the next sync catches up.
        ``resume``: the pages an earlier attempt wrote are not requested again
        (``paging.Resume``).
        """
        base = dict(params or {})
        clash = {"limit", "skip"} & base.keys()
        if clash:
            raise ValueError(f"list_pages sets limit and skip itself; do not pass {sorted(clash)}")

        async def fetch(skip: int) -> tuple[list[dict], int]:
            return await self._fetch_page(path, paginator, {**base, "limit": self.page_size, "skip": skip},
                                          path_params)

        records, total = await fetch(0)
        self._check_page(path, 0, total, records)
        if not records and total > 0:  # the total is not to be believed: nothing to page through
            log.warning("%s: the first page is empty, yet reports a total of %d: listing ends here", path, total)
            total = 0

        async def fetch_records(skip: int) -> Page[dict]:
            page, page_total = await fetch(skip)
            self._check_page(path, skip, total, page, page_total)
            return Page(page, skip, total)

        done = self._resumed(path, resume, total)
        skips = [skip for skip in page_offsets(total, self.page_size)[1:] if skip not in done]
        rest = ConcurrentPages(fetch_records, skips, self.max_in_flight)
        try:
            rest.start()  # start the other pages before the caller works on the first
            if records and 0 not in done:
                yield Page(records, 0, total)
            del records
            async for page in rest.completed():
                yield page
            if rest.ended_early_at is not None:
                self.stats.inconsistent_pages += 1
                log.warning("%s: an empty page at skip=%d ended the listing before its total of %d", path,
                            rest.ended_early_at, total)
        finally:
            await rest.cancel()

    def _resumed(self, path: str, resume: Resume | None, total: int) -> frozenset[int]:
        """The skips of the pages not to request again (``paging.Resume``)."""
        if resume is None or not resume.done:
            return frozenset()
        if resume.page_size != self.page_size:
            log.warning("%s: the pages written before were %d records long, now %d: listing from the start", path,
                        resume.page_size, self.page_size)
            return frozenset()
        if resume.total != total:
            self.stats.inconsistent_pages += 1
            log.warning("%s: the total moved from %d to %d since the pages written before: resumed, but the listing "
                        "counts as changed", path, resume.total, total)
        return resume.done

    async def _fetch_page(self, path: str, paginator: Paginator, query: Mapping[str, Any],
                          path_params: Mapping[str, Any] | None) -> tuple[list[dict], int]:
        """One page's records and total. A 200 with a body that is not the listing (truncated or
        malformed JSON, a missing total: a proxy's doing, usually) is retried like a 5xx."""
        attempt = 1
        while True:
            response = await self.request("GET", path, params=query, path_params=path_params)
            try:
                return paginator.records(response), paginator.total(response)
            except errors.BadResponseError:
                if attempt >= self.retry.max_attempts:
                    raise
            await self._backoff(self.retry.delay(attempt))
            attempt += 1

    def _check_page(self, path: str, skip: int, total: int, records: list[dict],
                    page_total: int | None = None) -> None:
        expected = max(0, min(self.page_size, total - skip))
        if page_total is not None and page_total != total:
            self.stats.inconsistent_pages += 1
            log.warning("%s: page at skip=%d reports a total of %d, the first page %d: the data changed while "
                        "listing", path, skip, page_total, total)
        elif len(records) != expected:
            self.stats.inconsistent_pages += 1
            # Data changed while listing, or the server capped our limit: log
            # it (a capped limit would silently miss records every time).
            log.warning(
                "%s: page at skip=%d has %d records, expected %d of total %d",
                path, skip, len(records), expected, total,
            )
