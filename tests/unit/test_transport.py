"""``jumpcloud.transport``: httpx requests over aiohttp, against real sockets on loopback.

What matters most is the failure classes: the client repeats a write only when the failure says the request never
reached the server (``retry.may_have_arrived``), so a disconnect after the request was sent must never pass for a
connection that could not be opened."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from jumpcloud.client import JumpCloudClient
from jumpcloud.retry import RetryPolicy, may_have_arrived
from jumpcloud.tls import ssl_context
from jumpcloud.transport import AiohttpTransport

KEY = "k" * 40
Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback HTTP/1.1 server whose every request is answered by ``handler(request head and body, writer)``;
    it records each request it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                await self.handler(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def answer(status: int = 200, body: bytes = b'{"ok": true}', headers: tuple[str, ...] = ()) -> Handler:
    async def handle(_request: bytes, writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Content-Type: application/json",
                 *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
    return handle


async def close_after_reading(_request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def half_a_body(_request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{\"ok\"")
    await writer.drain()
    writer.close()


async def silence(_request: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


def transport() -> AiohttpTransport:
    return AiohttpTransport(ssl_context=ssl_context(True), max_connections=4)


async def send(url: str, method: str = "GET", *, timeout: float = 5.0, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport(), timeout=timeout) as client:
        return await client.request(method, url, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_refused_connection_is_a_connect_error_never_sent(method):
    async def main():
        with pytest.raises(httpx.ConnectError) as failure:
            await send(f"http://127.0.0.1:{free_port()}/x", method, json={})
        assert not may_have_arrived(failure.value)
    asyncio.run(main())


@pytest.mark.parametrize("handler", [close_after_reading, half_a_body], ids=["no answer", "half a body"])
def test_a_disconnect_after_the_request_was_read_may_have_arrived(handler):
    async def main():
        async with Server(handler) as server:
            with pytest.raises(httpx.RemoteProtocolError) as failure:
                await send(server.url + "/x", "POST", json={"a": 1})
        assert len(server.requests) == 1 and server.requests[0].endswith(b'{"a":1}')
        assert may_have_arrived(failure.value)
        # aiohttp's exception and its traceback hold the request's headers: neither cause nor context
        assert failure.value.__cause__ is None and failure.value.__context__ is None
    asyncio.run(main())


def test_a_silent_server_is_a_read_timeout():
    async def main():
        async with Server(silence) as server:
            with pytest.raises(httpx.ReadTimeout):
                await send(server.url + "/x", timeout=0.3)
    asyncio.run(main())


def test_the_client_repeats_a_get_but_not_a_write_whose_answer_was_lost():
    """With writes repeated only when they certainly were not sent (``retry_non_idempotent=False``)."""
    async def main():
        async with Server(close_after_reading) as server:
            client = JumpCloudClient(base_url=server.url, api_key=KEY, retry=RetryPolicy(
                max_attempts=3, base_delay=0, max_delay=0, retry_non_idempotent=False))
            async with client:
                with pytest.raises(Exception, match="RemoteProtocolError"):
                    await client.request("GET", "/api/systemusers")
                reads = len(server.requests)
                with pytest.raises(Exception, match="RemoteProtocolError"):
                    await client.request("POST", "/api/systemusers", json={"email": "a@example.com"})
            assert reads == 3 and len(server.requests) == 4
            assert all(KEY.encode() in request for request in server.requests)
    asyncio.run(main())


def test_what_is_sent_is_what_httpx_built():
    async def main():
        async with Server(answer()) as server:
            response = await send(server.url + "/api/v2/usergroups/a%2Fb/members?skip=0&limit=100", "POST",
                                  headers={"x-api-key": KEY}, json={"id": "x"})
        assert response.json() == {"ok": True}
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /api/v2/usergroups/a%2Fb/members?skip=0&limit=100 HTTP/1.1"
        names = [line.split(":", 1)[0].lower() for line in lines[1:]]
        assert f"x-api-key: {KEY}" in lines and body == b'{"id":"x"}'
        assert "cookie" not in names and len(names) == len(set(names))  # no header twice (Host, User-Agent...)
        assert next(line for line in lines if line.lower().startswith("user-agent")).startswith("User-Agent: python-httpx")
    asyncio.run(main())


def test_a_bodiless_write_gets_no_guessed_content_type_and_the_version_is_the_servers():
    async def main():
        async with Server(answer()) as server:
            async with httpx.AsyncClient(transport=transport()) as client:
                response = await client.post(server.url + "/x")
        assert b"content-type" not in server.requests[0].lower()
        assert response.http_version == "HTTP/1.1"
    asyncio.run(main())


def test_a_second_event_loop_is_refused_with_a_clear_error():
    client = httpx.AsyncClient(transport=transport())  # not closed in between, as a client kept across loops

    async def main():
        async with Server(answer()) as server:
            assert (await client.get(server.url + "/x")).status_code == 200
            return server.url
    url = asyncio.run(main())
    with pytest.raises(RuntimeError, match="belongs to the event loop of its first request"):
        asyncio.run(client.get(url + "/x"))


def test_a_redirect_is_returned_not_followed():
    async def main():
        async with Server(answer(302, b"", ("Location: http://elsewhere.example/",))) as server:
            response = await send(server.url + "/x")
        assert response.status_code == 302 and response.headers["location"] == "http://elsewhere.example/"
        assert len(server.requests) == 1
    asyncio.run(main())


def test_a_gzip_body_is_decoded():
    body = gzip.compress(b'{"results": [1, 2]}')

    async def main():
        async with Server(answer(body=body, headers=("Content-Encoding: gzip",))) as server:
            response = await send(server.url + "/x")
        assert response.json() == {"results": [1, 2]}
    asyncio.run(main())


def test_connections_are_kept_alive_and_bounded():
    async def main():
        async with Server(answer()) as server:
            async with httpx.AsyncClient(transport=AiohttpTransport(ssl_context=ssl_context(True),
                                                                    max_connections=2)) as client:
                await asyncio.gather(*(client.get(server.url + f"/{i}") for i in range(20)))
        assert len(server.requests) == 20 and server.connections == 2
    asyncio.run(main())


def _without_proxies(monkeypatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("form", ["http://user:p%40ss@{}", "{}"], ids=["with credentials", "without a scheme"])
def test_a_proxy_url_with_credentials_or_without_a_scheme(monkeypatch, form):
    async def main():
        async with Server(answer()) as target, Server(answer(body=b'{"via": "proxy"}')) as proxy:
            monkeypatch.setenv("HTTP_PROXY", form.format(f"127.0.0.1:{proxy.port}"))
            assert (await send(target.url + "/x")).json() == {"via": "proxy"}
        head = proxy.requests[0].decode()
        if "user" in form:
            assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss
        else:
            assert "proxy-authorization" not in head.lower()

    _without_proxies(monkeypatch)
    asyncio.run(main())


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    async def main(expect_proxy: bool):
        async with Server(answer()) as target, Server(answer(body=b'{"via": "proxy"}')) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            response = await send(target.url + "/x")
        assert response.json() == ({"via": "proxy"} if expect_proxy else {"ok": True})
        if expect_proxy:  # absolute form, as a proxy is asked
            assert proxy.requests[0].startswith(f"GET {target.url}/x HTTP/1.1".encode()) and not target.requests
        else:
            assert target.requests and not proxy.requests

    _without_proxies(monkeypatch)
    asyncio.run(main(expect_proxy=True))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    asyncio.run(main(expect_proxy=False))
