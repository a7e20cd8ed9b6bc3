"""The client's HTTP transport: httpx's interface over aiohttp's connection pool and HTTP parser.

Why not httpx's own transport (httpcore, h11, anyio): a request costs more CPU there (docs/benchmarks.md), and
a sync part keeps its requests in flight on one event loop, so that CPU, not the API, was what the part waited
for.
Why not the ``httpx-aiohttp`` package: it maps a server that disconnected to ``ConnectTimeout``, i.e. "never
sent", and the client would then repeat a write that JumpCloud may already have applied
(``retry.may_have_arrived``).

The client above keeps speaking httpx (requests, responses, ``MockTransport`` in unit tests); this module only
moves bytes. What it keeps of httpx's default transport:

| concern | rule here |
|---|---|
| attempts | one per call: aiohttp's own second try of an idempotent request is off |
| redirects | never followed (``allow_redirects=False``): the client refuses them |
| bodies | read whole, as httpx does for a non-streamed request; httpx decodes gzip/deflate |
| URL | sent as httpx encoded it (path parameters stay quoted) |
| TLS | the context given (``tls.ssl_context``: verification always on) |
| headers | httpx's, and nothing else (no cookie jar, no guessed ``Content-Type``) |
| proxies | ``HTTP(S)_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` from the environment, as httpx's ``trust_env`` (a value
  without a scheme is ``http://``); never ``.netrc`` (aiohttp's ``trust_env`` would add its credentials) |
| timeouts | httpx's connect and read timeouts; its pool timeout bounds getting a connection (pool wait, DNS,
  TCP, TLS, proxy); the client bounds the whole attempt |
| event loop | the one of the first request; another is refused (an aiohttp session belongs to one loop) |
| failures | httpx's exception classes, chosen by whether the request may have reached the server (below) |
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Mapping

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport", "httpx_failure"]

#: aiohttp's failures as httpx's, most specific first. Only ``ConnectTimeout`` and ``ConnectError`` say the
#: request was never sent (``retry._NOT_SENT``): a connection that could not be opened, to the server or the
#: proxy (as with httpx, a proxy that refused the tunnel is a ``ProxyError``, retried but not called unsent).
#: Anything after the connection was open (a disconnect, a reset, a malformed or cut response, a read timeout)
#: may come after the server took the request.
_FAILURES: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (OSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


def httpx_failure(failure: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp (or socket) failure of ``request``, or None for any other exception.
    It carries the message only: aiohttp's exception and its traceback hold the request's headers (the key), so
    the caller raises it outside the ``except`` block, with neither a cause nor a context."""
    for aiohttp_type, httpx_type in _FAILURES:
        if isinstance(failure, aiohttp_type):
            return httpx_type(str(failure) or type(failure).__name__, request=request)
    return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session: at most ``max_connections`` open connections, each
    kept ``keepalive_expiry`` seconds when idle. The session is opened at the first request, on the event loop
    that sends it (an aiohttp session belongs to one loop), and closed by ``aclose``."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int,
                 keepalive_expiry: float = 5.0) -> None:
        self._ssl = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_of_host: dict[tuple[str, str], yarl.URL | None] = {}

    def _session_here(self) -> aiohttp.ClientSession:
        """The session, opened on the running loop at the first request; used from another loop, an error that
        says so (httpx's transport would have used sockets of the first loop's)."""
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._loop = loop
            return self._open()
        if loop is not self._loop:
            raise RuntimeError("a JumpCloud client belongs to the event loop of its first request; build one for "
                               "this loop")
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ssl=self._ssl,
                                         keepalive_timeout=self._keepalive_expiry)
        # The transport sends the headers httpx built and nothing else: no cookie jar, no default headers.
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                        auto_decompress=False, trust_env=False,
                                        skip_auto_headers=("Content-Type",))
        # aiohttp sends an idempotent request a second time when its connection failed. The client decides
        # every attempt itself: each one takes a slot of the budget and is counted (tests/unit/test_transport).
        session._retry_connection = False
        self._session = session
        return session

    def _proxy(self, url: httpx.URL) -> yarl.URL | None:
        """The proxy the environment names for ``url``'s scheme (``ALL_PROXY`` otherwise), unless ``NO_PROXY``
        exempts its host; looked up once per scheme and host."""
        key = (url.scheme, url.host)
        if key not in self._proxy_of_host:
            proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
            if proxy and "://" not in proxy:
                proxy = "http://" + proxy
            bypass = proxy and urllib.request.proxy_bypass(url.host)
            self._proxy_of_host[key] = yarl.URL(proxy) if proxy and not bypass else None
        return self._proxy_of_host[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_here()
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        content = await request.aread()
        failure: httpx.TransportError | None = None
        try:
            async with session.request(
                request.method, yarl.URL(str(request.url), encoded=True),
                headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
                data=content or None, allow_redirects=False, compress=None,
                timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.get("pool"),
                                              sock_connect=timeouts.get("connect"),
                                              sock_read=timeouts.get("read")),
                proxy=self._proxy(request.url),  # its credentials, if any, are taken from the URL
            ) as response:
                body = await response.read()
                status, headers, reason = response.status, response.raw_headers, response.reason
                version = b"HTTP/%d.%d" % tuple(response.version or (1, 1))
        except (aiohttp.ClientError, OSError) as exc:
            failure = httpx_failure(exc, request)
            if failure is None:  # pragma: no cover  (every ClientError and OSError maps)
                raise
        if failure is not None:
            raise failure
        extensions = {"http_version": version}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body), request=request,
                              extensions=extensions)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
