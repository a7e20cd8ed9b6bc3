"""The async JumpCloud API client (httpx).

One client per org and per event loop (httpx connection pools and the
asyncio semaphore belong to the loop they were first used on): a sync part
creates it inside its ``asyncio.run`` and closes it at the end; a provisioning
worker process keeps one per connector on its own long-lived loop
(``provisioning.clients``). The SSLContext is shared by every client of a
process (``shared_ssl_context``).

What it takes care of, so that connectors only name endpoints:

* auth headers (``x-api-key``, ``x-org-id``) and JSON content negotiation;
* retries of 429/5xx/transport failures with jittered backoff (``retry.py``);
* a bound on requests in flight (an ``asyncio.Semaphore``; a request waiting
  out a backoff gives its slot back, so one throttled request does not stall
  the others);
* paging v1 envelopes and v2 bare arrays (``paging.py``): first page, then the
  rest concurrently, never past the total;
* mapping failures to ``jumpcloud.errors`` without ever putting the API key
  in an error, a repr or an exception chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import quote

import certifi
import httpx

from . import errors
from .limits import Limiter
from .paging import Paginator, V1EnvelopePaginator, V2HeaderPaginator, page_offsets, parse_json
from .retry import NON_IDEMPOTENT_METHODS, RetryPolicy

__all__ = ["JumpCloudClient", "ClientStats", "MAX_PAGE_SIZE", "USER_AGENT"]

log = logging.getLogger(__name__)

#: JumpCloud's documented maximum ``limit``; what it does above it is unknown.
MAX_PAGE_SIZE = 100


def _version() -> str:
    try:
        return metadata.version("jumpsync")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


USER_AGENT = f"jumpsync/{_version()}"

# Transport failures worth retrying (the network or the server hiccuped) vs.
# deterministic ones (a bad URL scheme, a malformed request) that will fail the
# same way every time.
_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
# Failures where the request certainly never reached the server: safe to retry
# even for POST when RetryPolicy.retry_non_idempotent is False.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

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
    by_status: Counter = field(default_factory=Counter)
    throttled: int = 0
    inconsistent_pages: int = 0


class _ApiKeyAuth(httpx.Auth):
    """Adds ``x-api-key`` per request.

    Kept out of the client's default headers so that no long-lived object
    whose repr shows headers (``httpx.Headers`` only masks Authorization)
    holds the key, and so that its own repr never shows it.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["x-api-key"] = self._key
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(<redacted>)"


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: where plain http may go (the simulator, tests)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str) -> httpx.URL:
    """Only https, except plain http to this machine (the simulator, tests):
    the API key must never cross a network in clear text."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid base_url {base_url!r}: {exc}") from None
    if url.userinfo:
        raise ValueError("base_url must not contain credentials")
    if not url.host:
        raise ValueError(f"base_url {base_url!r} has no host")
    if url.query or url.fragment:
        raise ValueError(f"base_url {base_url!r} must not have a query or fragment")
    if url.scheme == "https":
        return url
    if url.scheme == "http":
        if is_loopback_host(url.host):
            return url
        raise ValueError(
            f"refusing plain http base_url {base_url!r}: the API key would travel in clear text; "
            "use https (http is only allowed to loopback hosts)"
        )
    raise ValueError(f"base_url {base_url!r} must use https")


def _check_api_key(api_key: str) -> str:
    """Validate the key without ever echoing it: httpx would otherwise raise a
    UnicodeEncodeError that carries the whole header value."""
    if not isinstance(api_key, str):
        raise TypeError("api_key must be a str")
    key = api_key.strip()  # a trailing newline from a secrets file is common
    if not key:
        raise ValueError("api_key is empty")
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ValueError("api_key contains characters that cannot go in an HTTP header")
    return key


# One SSLContext per CA source and process. Building one (``ssl.create_default_context``, which parses the
# whole CA bundle) takes ~30 ms here, and httpx would otherwise build one for every client, even for a
# plain-http loopback base URL. A context is safe to share between connections and clients: httpcore only
# sets the ALPN protocols on it, always the same ones for HTTP/1.1.
_SSL_CONTEXTS: dict[tuple[str, str], tuple[tuple, ssl.SSLContext]] = {}
_SSL_CONTEXTS_LOCK = threading.Lock()


def _ca_source(verify: bool | str | os.PathLike) -> tuple[str, str]:
    """("file" | "dir", path) of the CAs to trust: the given bundle, or what httpx would use for ``True``
    (``SSL_CERT_FILE``, ``SSL_CERT_DIR``, else certifi's bundle)."""
    if verify is True:
        if os.environ.get("SSL_CERT_FILE"):
            return "file", os.environ["SSL_CERT_FILE"]
        if os.environ.get("SSL_CERT_DIR"):
            return "dir", os.environ["SSL_CERT_DIR"]
        return "file", certifi.where()
    path = os.fspath(verify)
    if os.path.isdir(path):
        return "dir", path
    if os.path.isfile(path):
        return "file", path
    raise ValueError(f"CA bundle {path!r} does not exist")


def _stamp(path: str) -> tuple:
    """What changes when the bundle is replaced or edited, so that a new one is read (a CA rotation)."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def shared_ssl_context(verify: bool | str | os.PathLike = True) -> ssl.SSLContext:
    """The process's SSLContext for a CA source (``True``: the default CAs; or a bundle file or directory),
    built on first use and again only when the bundle file or directory changes."""
    kind, path = _ca_source(verify)
    stamp = _stamp(path)
    with _SSL_CONTEXTS_LOCK:
        cached = _SSL_CONTEXTS.get((kind, path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        context = ssl.create_default_context(**({"cafile": path} if kind == "file" else {"capath": path}))
        _SSL_CONTEXTS[(kind, path)] = (stamp, context)
        return context


def _ssl_context(verify: bool | str | os.PathLike | ssl.SSLContext) -> ssl.SSLContext:
    """True, a CA bundle path (file or directory) or an SSLContext; never False.

    Turning verification off would hand the key to whoever sits in the middle.
    """
    if verify is False or verify is None:
        raise ValueError("TLS verification cannot be turned off; pass a CA bundle path instead")
    if isinstance(verify, ssl.SSLContext):
        if verify.verify_mode == ssl.CERT_NONE or not verify.check_hostname:
            raise ValueError("the SSLContext given as verify must verify certificates and hostnames")
        return verify
    if verify is True or isinstance(verify, (str, os.PathLike)):
        return shared_ssl_context(verify)
    raise TypeError("verify must be True, a CA bundle path or an ssl.SSLContext")


def _split_path(path: str) -> str:
    """The path without its query string, for errors and metrics labels."""
    return path.split("?", 1)[0]


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
        verify: bool | str | os.PathLike | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = MAX_PAGE_SIZE,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_response: OnResponse | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        url = _check_base_url(base_url)
        key = _check_api_key(api_key)
        if org_id is not None:
            if not isinstance(org_id, str) or not org_id.strip():
                raise ValueError("org_id must be a non-empty string or None")
            org_id = org_id.strip()
            if not org_id.isascii() or not org_id.isprintable():
                raise ValueError(f"org_id {org_id!r} cannot go in an HTTP header")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError("max_in_flight must be an integer >= 1")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}")
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be > 0")

        self.base_url = str(url)
        self.org_id = org_id
        self.max_in_flight = max_in_flight
        self.page_size = page_size
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
            auth=_ApiKeyAuth(key),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
            verify=_ssl_context(verify),
            transport=transport,
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
        if self._key and self._key in text:
            text = text.replace(self._key, "<redacted>")
        return text

    def _resolve(self, path: str, path_params: Mapping[str, Any] | None) -> tuple[str, str]:
        """(concrete path, label for metrics) from a path or a template."""
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
            # An absolute URL here would send the key to another host.
            raise ValueError(f"path must be relative to base_url and start with '/': {path!r}")
        if path_params:
            concrete = path.format_map({k: quote(str(v), safe="") for k, v in path_params.items()})
            return concrete, _split_path(path)
        if "{" in path or "}" in path:
            raise ValueError(f"path {path!r} has placeholders but no path_params")
        return path, _split_path(path)

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

    def _error_message(self, response: httpx.Response) -> str:
        """JumpCloud's error text: ``message`` (reliably present), else
        ``error``, else the start of the body."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        message: Any = None
        if isinstance(body, dict):
            message = body.get("message") or body.get("error")
        if message is None:
            try:
                message = response.text.strip()[:200]
            except Exception:  # undecodable body
                message = ""
        return self._scrub(str(message).strip())

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
        concrete, label = self._resolve(path, path_params)
        where = _split_path(concrete)
        query = {k: v for k, v in params.items() if v is not None} if params else None
        policy = self.retry
        may_repeat = reads_only or policy.retry_non_idempotent or method not in NON_IDEMPOTENT_METHODS
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            failure: httpx.RequestError | None = None
            async with self._slots, (self._limiter.slot() if self._limiter else contextlib.nullcontext()):
                started = time.monotonic()
                try:
                    response = await self._http.request(method, concrete, params=query, json=json)
                except httpx.RequestError as exc:
                    failure = exc
                elapsed = time.monotonic() - started

            if failure is not None:
                self._observe(method, label, "transport", elapsed)
                retryable = isinstance(failure, _RETRYABLE_TRANSPORT) and (
                    may_repeat or isinstance(failure, _NOT_SENT)
                )
                if retryable and attempt < policy.max_attempts:
                    wait = policy.delay(attempt, None)
                    self._log_retry(method, where, type(failure).__name__, attempt, wait)
                    failure = None  # drop it now: it holds the request (and its headers)
                    await self._backoff(wait)
                    continue
                raise self._transport_error(failure, method, where, attempt)

            assert response is not None
            status = response.status_code
            self._observe(method, label, status, elapsed)
            if 200 <= status <= 299:
                return response
            retryable = policy.is_retryable(status) and (may_repeat or status == 429)
            if retryable and attempt < policy.max_attempts:
                wait = policy.delay(attempt, response.headers.get("retry-after"))
                self._log_retry(method, where, str(status), attempt, wait)
                await response.aclose()
                await self._backoff(wait)
                continue
            if 300 <= status <= 399:
                location = self._scrub(response.headers.get("location", "?"))
                raise errors.BadResponseError(status, method, where, f"unexpected redirect to {location}")
            raise errors.error_for_status(
                status, method, where, self._error_message(response), attempts=attempt
            )

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

    def _transport_error(
        self, failure: httpx.RequestError, method: str, where: str, attempts: int
    ) -> errors.TransportError:
        """A TransportError whose cause is a *copy* of the httpx error.

        The original holds the ``httpx.Request`` (and so the key in its
        headers) and a chain of httpcore/OS exceptions; the copy keeps only
        the class and message, which is what a traceback shows anyway. The
        caller raises it outside any ``except`` block, so no implicit
        ``__context__`` points back at the original either.
        """
        text = self._scrub(str(failure))
        name = type(failure).__name__
        message = f"{name}: {text}" if text else name
        error = errors.TransportError(None, method, where, message, attempts=attempts)
        try:
            cause: BaseException | None = type(failure)(text)
        except Exception:
            cause = None
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error

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
    ) -> AsyncIterator[list[dict]]:
        """Pages of a v1 listing (``{"totalCount", "results"}``), sorted by
        ``_id`` unless ``params`` has a ``sort``, so that skip paging neither
        misses nor repeats records when the data changes meanwhile."""
        query = dict(params or {})
        query.setdefault("sort", "_id")
        return self.list_pages(path, V1EnvelopePaginator(), query, path_params=path_params)

    def list_v2(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[list[dict]]:
        """Pages of a v2 listing (bare array, total in ``x-total-count``)."""
        return self.list_pages(path, V2HeaderPaginator(), params, path_params=path_params)

    async def list_pages(
        self,
        path: str,
        paginator: Paginator,
        params: Mapping[str, Any] | None = None,
        *,
        path_params: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[list[dict]]:
        """Yield the records of every page of a listing, one list per page.

        Fetches the first page (skip=0) to learn the total, then the other
        pages concurrently, at most ``max_in_flight`` page fetches at a time so
        that memory stays bounded, and yields pages as they complete (order not
        guaranteed). Never requests a page at ``skip >= total``; an empty
        listing costs exactly one request. Empty pages are not yielded. If the
        data changed during the listing and a page comes back short, what came
        is yielded and no extra page is fetched: the next sync catches up.
        """
        base = dict(params or {})
        clash = {"limit", "skip"} & base.keys()
        if clash:
            raise ValueError(f"list_pages sets limit and skip itself; do not pass {sorted(clash)}")
        size = self.page_size

        async def fetch(skip: int) -> tuple[list[dict], int]:
            """One page's records and total. A 200 with a body that is not the listing (truncated or
            malformed JSON, a missing total: a proxy's doing, usually) is retried like a 5xx."""
            query = {**base, "limit": size, "skip": skip}
            for attempt in range(1, self.retry.max_attempts + 1):
                response = await self.request("GET", path, params=query, path_params=path_params)
                try:
                    return paginator.records(response), paginator.total(response)
                except errors.BadResponseError:
                    if attempt >= self.retry.max_attempts:
                        raise
                    await self._backoff(self.retry.delay(attempt))
            raise AssertionError("unreachable")  # pragma: no cover

        records, total = await fetch(0)
        self._check_page(path, 0, total, records)

        async def fetch_records(skip: int) -> list[dict]:
            page, page_total = await fetch(skip)
            self._check_page(path, skip, total, page, page_total)
            return page

        remaining = iter(page_offsets(total, size)[1:])
        pending: set[asyncio.Task[list[dict]]] = set()

        def refill() -> None:
            while len(pending) < self.max_in_flight:
                skip = next(remaining, None)
                if skip is None:
                    return
                pending.add(asyncio.ensure_future(fetch_records(skip)))

        try:
            refill()  # start the other pages before the caller works on the first
            if records:
                yield records
            del records
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.difference_update(done)
                failed = [task.exception() for task in done if task.exception() is not None]
                if failed:
                    raise failed[0]
                refill()
                for task in done:
                    page = task.result()
                    if page:
                        yield page
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

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
