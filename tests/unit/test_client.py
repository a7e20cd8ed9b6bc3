"""JumpCloudClient: construction, headers, requests, concurrency, stats."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from pathlib import Path

import certifi
import httpx
import pytest
import respx

from jumpcloud import BadResponseError, ClientStats, JumpCloudClient, NotFoundError
from tests.support.fake_jumpcloud import BASE, KEY, fake_client, json_response, run


def _echo(request):
    return json_response(200, {"ok": True})


# -- construction ---------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://console.jumpcloud.com",
    "http://10.0.0.5:8080",
    "http://example.com/api",
    "http://127.0.0.1.nip.io",
    "http://localhost.example.com",
])
def test_plain_http_refused_unless_loopback(url):
    with pytest.raises(ValueError, match="http") as info:
        JumpCloudClient(base_url=url, api_key=KEY)
    assert url in str(info.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000",
    "http://127.9.8.7",
    "http://localhost:9999",
    "http://LOCALHOST",
    "http://[::1]:8000",
    "https://console.eu.jumpcloud.com",
])
def test_https_and_loopback_http_allowed(url):
    client = JumpCloudClient(base_url=url, api_key=KEY, transport=httpx.MockTransport(_echo))
    run(client.aclose())


@pytest.mark.parametrize("url", ["ftp://console.jumpcloud.com", "console.jumpcloud.com",
                                 "https://user:pw@console.jumpcloud.com", "https://"])
def test_other_bad_base_urls(url):
    with pytest.raises(ValueError):
        JumpCloudClient(base_url=url, api_key=KEY)


def test_tls_verification_cannot_be_disabled():
    with pytest.raises(ValueError, match="verification"):
        JumpCloudClient(base_url=BASE, api_key=KEY, verify=False)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError):
        JumpCloudClient(base_url=BASE, api_key=KEY, verify=ctx)


def test_verify_accepts_ca_bundle_path(tmp_path):
    client = JumpCloudClient(base_url=BASE, api_key=KEY, verify=certifi.where())
    run(client.aclose())
    with pytest.raises(ValueError, match="does not exist"):
        JumpCloudClient(base_url=BASE, api_key=KEY, verify=str(tmp_path / "missing.pem"))


def test_ssl_context_is_built_once_per_ca_bundle(tmp_path, monkeypatch):
    """Building a context parses the CA bundle: one per CA source and process, shared by every client."""
    from jumpcloud.tls import shared_ssl_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    default = shared_ssl_context(True)
    assert shared_ssl_context(True) is default
    assert shared_ssl_context(certifi.where()) is default  # True means certifi's bundle, as httpx has it
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    other = shared_ssl_context(str(bundle))
    assert other is not default and shared_ssl_context(bundle) is other
    assert other.verify_mode == ssl.CERT_REQUIRED and other.check_hostname
    directory = tmp_path / "cas"
    directory.mkdir()
    assert shared_ssl_context(directory) not in (default, other)

    built = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: built.append(kw) or real(*a, **kw))
    for verify in (True, str(bundle), True):
        run(JumpCloudClient(base_url=BASE, api_key=KEY, verify=verify).aclose())
    assert built == []  # neither we nor httpx built another one


def test_a_replaced_ca_bundle_is_read_again(tmp_path):
    from jumpcloud.tls import shared_ssl_context

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    first = shared_ssl_context(bundle)
    replacement = tmp_path / "new.pem"
    replacement.write_bytes(Path(certifi.where()).read_bytes() + b"\n")
    replacement.replace(bundle)  # a CA rotation: the file is swapped for a new one
    second = shared_ssl_context(bundle)
    assert second is not first and shared_ssl_context(bundle) is second


@pytest.mark.parametrize("kwargs", [{"max_in_flight": 0}, {"timeout": 0}, {"org_id": ""},
                                    {"api_key": ""}, {"api_key": "   "}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        JumpCloudClient(**{"base_url": BASE, "api_key": KEY, **kwargs})


# -- headers ----------------------------------------------------------------------


def test_headers_sent():
    seen = []

    def handler(request):
        seen.append(request)
        return json_response(200, {})

    client, _ = fake_client(handler, org_id="5f0c2a9e8b7d4c3a2b1a0f9e")
    run(client.get_json("/api/systemusers"))
    h = seen[0].headers
    assert h["x-api-key"] == KEY
    assert h["x-org-id"] == "5f0c2a9e8b7d4c3a2b1a0f9e"
    assert h["accept"] == "application/json"
    assert h["content-type"] == "application/json"
    assert re.fullmatch(r"jumpsync/\S+", h["user-agent"])
    assert str(seen[0].url) == BASE + "/api/systemusers"


def test_no_org_header_for_single_tenant():
    seen = []
    client, _ = fake_client(lambda r: seen.append(r) or json_response(200, {}))
    run(client.get_json("/api/systemusers"))
    assert "x-org-id" not in seen[0].headers


def test_key_read_from_a_file_is_stripped():
    seen = []
    client, _ = fake_client(lambda r: seen.append(r) or json_response(200, {}), api_key=KEY + "\n")
    run(client.get_json("/api/x"))
    assert seen[0].headers["x-api-key"] == KEY


def test_with_respx():
    # respx's default mocks httpcore; the client's transport is aiohttp (jumpcloud.transport): mock httpx's.
    with respx.mock(base_url=BASE, assert_all_called=True, using="httpx") as mock:
        route = mock.get("/api/v2/usergroups/g1").respond(200, json={"id": "g1", "name": "eng"})

        async def go():
            async with JumpCloudClient(base_url=BASE, api_key=KEY) as client:
                return await client.get_json("/api/v2/usergroups/g1")

        assert run(go()) == {"id": "g1", "name": "eng"}
        assert route.calls.last.request.headers["x-api-key"] == KEY


# -- requests ---------------------------------------------------------------------


def test_request_sends_json_body_and_returns_response():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(204)

    client, _ = fake_client(handler)
    body = {"op": "add", "type": "user", "id": "u1"}
    resp = run(client.request("post", "/api/v2/usergroups/g1/members", json=body))
    assert resp.status_code == 204
    assert seen[0].method == "POST"
    assert json.loads(seen[0].content) == body


def test_empty_object_body_is_sent():
    seen = []
    client, _ = fake_client(lambda r: seen.append(r) or json_response(200, {}))
    run(client.request("POST", "/api/systemusers/u1/state/activate", json={}))
    assert seen[0].content == b"{}"


def test_none_params_dropped():
    seen = []
    client, _ = fake_client(lambda r: seen.append(r) or json_response(200, []))
    run(client.get_json("/api/v2/applications/a1/associations", {"targets": "user", "filter": None}))
    assert dict(seen[0].url.params) == {"targets": "user"}


def test_get_json_empty_body_is_none():
    client, _ = fake_client(lambda r: httpx.Response(204))
    assert run(client.get_json("/api/x")) is None


def test_get_json_invalid_json():
    client, _ = fake_client(lambda r: httpx.Response(200, content=b"<html>"))
    with pytest.raises(BadResponseError, match="invalid JSON") as info:
        run(client.get_json("/api/x"))
    assert str(info.value).startswith("GET /api/x: bad response (HTTP 200): invalid JSON")


@pytest.mark.parametrize("path", ["https://evil.example/api/x", "//evil.example/api/x", "api/x", ""])
def test_path_must_be_relative(path):
    seen = []
    client, _ = fake_client(lambda r: seen.append(r) or json_response(200, {}))
    with pytest.raises(ValueError):
        run(client.get_json(path))
    assert seen == []


def test_unfilled_template_refused():
    client, _ = fake_client(_echo)
    with pytest.raises(ValueError, match="placeholders"):
        run(client.get_json("/api/v2/usergroups/{id}"))


def test_redirect_not_followed():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(302, headers={"location": "https://elsewhere.example/steal"})

    client, _ = fake_client(handler)
    with pytest.raises(BadResponseError, match="redirect"):
        run(client.get_json("/api/x"))
    assert len(seen) == 1


def test_context_manager_closes():
    client, _ = fake_client(_echo)

    async def go():
        async with client as c:
            assert c is client
            await c.get_json("/api/x")
        with pytest.raises(RuntimeError):
            await client.get_json("/api/x")

    run(go())


# -- concurrency ------------------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts how many requests are inside the transport at once."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.total = 0

    async def handle_async_request(self, request):
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.002)
            return json_response(200, {"n": self.total})
        finally:
            self.now -= 1


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_max_in_flight_respected(limit):
    transport = CountingTransport()
    client = JumpCloudClient(base_url=BASE, api_key=KEY, max_in_flight=limit, transport=transport)

    async def go():
        async with client:
            await asyncio.gather(*(client.get_json(f"/api/x/{i}") for i in range(30)))

    run(go())
    assert transport.total == 30
    assert transport.peak == limit


def test_max_in_flight_shared_by_concurrent_listings():
    transport = CountingTransport()

    class Lister(CountingTransport):
        async def handle_async_request(self, request):
            await transport.handle_async_request(request)
            return json_response(200, [{"id": "x"}] * 100, {"x-total-count": "1000"})

    client = JumpCloudClient(base_url=BASE, api_key=KEY, max_in_flight=4, transport=Lister())

    async def drain(path):
        return sum([len(p) async for p in client.list_v2(path)])

    async def go():
        async with client:
            return await asyncio.gather(drain("/api/v2/a"), drain("/api/v2/b"), drain("/api/v2/c"))

    assert run(go()) == [1000, 1000, 1000]
    assert transport.peak <= 4
    assert transport.total == 30


# -- stats and hooks -------------------------------------------------------------------


def test_stats_and_on_response_hook():
    events = []
    answers = iter([json_response(429, {}), json_response(200, {}), json_response(404, {"message": "no"})])
    client, _ = fake_client(lambda r: next(answers), on_response=lambda *a: events.append(a))

    async def go():
        async with client:
            await client.get_json("/api/systemusers/{id}", path_params={"id": "u1"})
            with pytest.raises(NotFoundError):
                await client.get_json("/api/systemusers/u2?fields=email")

    run(go())
    assert isinstance(client.stats, ClientStats)
    assert client.stats.requests == 3
    assert client.stats.retries == 1
    assert client.stats.throttled == 1
    assert client.stats.by_status == {429: 1, 200: 1, 404: 1}
    assert [(m, p, s) for m, p, s, _ in events] == [
        ("GET", "/api/systemusers/{id}", 429),
        ("GET", "/api/systemusers/{id}", 200),
        ("GET", "/api/systemusers/u2", 404),
    ]
    assert all(isinstance(e, float) and e >= 0 for *_, e in events)


def test_broken_hook_does_not_break_requests():
    def hook(*args):
        raise RuntimeError("metrics down")

    client, _ = fake_client(_echo, on_response=hook)
    assert run(client.get_json("/api/x")) == {"ok": True}


def test_transport_failures_counted():
    events = []
    calls = iter([httpx.ConnectError("refused")])

    def handler(request):
        exc = next(calls, None)
        if exc:
            raise exc
        return json_response(200, {})

    client, _ = fake_client(handler, on_response=lambda *a: events.append(a[2]))
    run(client.get_json("/api/x"))
    assert client.stats.by_status == {"transport": 1, 200: 1}
    assert events == ["transport", 200]
