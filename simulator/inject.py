"""Response damage for fault rules, at the ASGI level: a slow answer that notices the client leaving, a connection
dropped mid-body, a truncated or malformed body, a total that disagrees with the rows.

The damaged answers start from the real one (captured from the route), so headers such as `x-total-count` and
the status stay what the route said unless the fault is about them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MALFORMED_BODY = "<html>oops</html>"


class SimulatedDrop(Exception):
    """Raised after a partial body so that uvicorn closes the connection (a `drop` fault); the log filter
    installed by `quiet_simulated_drops` keeps uvicorn from logging it as an application error."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


_FILTER = _DropFilter()


def quiet_simulated_drops() -> None:
    """Install (once) the filter that hides uvicorn's "Exception in ASGI application" for `drop` faults."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


async def sleep_unless_gone(seconds: float, receive: Receive) -> tuple[bool, Receive]:
    """Sleep, but stop early when the client disconnects (a client that timed out has gone: the simulator must not
    hold the request, nor the server's shutdown, for the rest of a long delay). Reads the request body first and
    returns a `receive` that replays it, plus whether the client left."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    if messages[-1]["type"] == "http.disconnect":
        return True, receive
    waiter = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        if not waiter.done():
            waiter.cancel()
    if done and waiter.result()["type"] == "http.disconnect":
        return True, receive
    if done:  # not expected for HTTP/1.1 (only a disconnect follows the body), but never lose a message
        messages.append(waiter.result())

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return False, replay


async def capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run `app` and collect its answer: (status, headers, whole body)."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


def set_header(headers: list[tuple[bytes, bytes]], name: str, value: str) -> list[tuple[bytes, bytes]]:
    key = name.lower().encode("latin-1")
    return [(k, v) for k, v in headers if k.lower() != key] + [(key, value.encode("latin-1"))]


def get_header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    key = name.lower().encode("latin-1")
    for k, v in headers:
        if k.lower() == key:
            return v.decode("latin-1")
    return None


def shift_total(headers: list[tuple[bytes, bytes]], body: bytes, delta: int
                ) -> tuple[list[tuple[bytes, bytes]], bytes, int | None]:
    """Add `delta` (not below 0) to a v2 `x-total-count` header or a v1 `totalCount`; also returns the new total,
    or None when the answer carries no total (then it is unchanged)."""
    raw = get_header(headers, "x-total-count")
    if raw is not None and raw.strip().isdigit():
        total = max(0, int(raw) + delta)
        return set_header(headers, "x-total-count", str(total)), body, total
    try:
        data = json.loads(body)
    except ValueError:
        return headers, body, None
    if isinstance(data, dict) and isinstance(data.get("totalCount"), int):
        data["totalCount"] = total = max(0, data["totalCount"] + delta)
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return headers, body, total
    return headers, body, None


async def answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a complete answer; Content-Length is set to the body sent."""
    headers = set_header(headers, "content-length", str(len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def drop(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Start the answer with its full Content-Length, send the first half of the body, then close the connection.
    An empty body is announced as one byte so that the close is always mid-body, and a status that cannot have a
    body (1xx, 204, 304: the client would take the answer as complete) is sent as 200: the client must see the
    transport error, whatever the route answered; the route's work is done either way."""
    if status < 200 or status in (204, 304):
        status = 200
    headers = set_header(headers, "content-length", str(max(1, len(body))))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise SimulatedDrop("simulated connection drop")


async def drip(send: Send, receive: Receive, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
               pause_s: float) -> None:
    """Send the answer with its full Content-Length, then its body one byte at a time, ``pause_s`` apart: a client
    whose timeout bounds each read (not the whole answer) waits for the last byte as long as it takes. Stops
    when the client has gone."""
    headers = set_header(headers, "content-length", str(len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for index in range(len(body)):
        await send({"type": "http.response.body", "body": body[index:index + 1], "more_body": index + 1 < len(body)})
        if index + 1 < len(body):
            gone, receive = await sleep_unless_gone(pause_s, receive)
            if gone:
                return
    if not body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
