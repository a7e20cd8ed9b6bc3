"""Directory Insights events: ``POST /insights/directory/v1/events``, paged by ``X-Search_after``.

The events live on another host than the v1/v2 API (``api.jumpcloud.com`` against ``console.jumpcloud.com``), so
a connector reads them with a ``JumpCloudClient`` of its own whose ``base_url`` is ``events_base_url_for`` its
API base URL (or what the connector sets); retries, the budget and the key's secrecy are the same.

Paging, as the spec says ("Getting All the Pages of Data"): send the same query again with ``search_after`` set
to the previous page's ``X-Search_after`` (a JSON array, sent back as it came), until ``X-Result-Count`` is less
than ``X-Limit``. The header is on every page, the last one too, so its presence means nothing. ``end_time`` is
fixed for the whole read: the rule asks for the same query each time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .errors import BadResponseError
from .paging import parse_json

if TYPE_CHECKING:
    import httpx

    from .client import JumpCloudClient

EVENTS_PATH = "/insights/directory/v1/events"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

#: The v1/v2 console host of each region and its Directory Insights host. US and EU are in the DI spec
#: (``x-ms-parameterized-host``); India's is JumpCloud's own serverless app's (docs/directory-insights.md).
EVENTS_HOSTS = {
    "console.jumpcloud.com": "api.jumpcloud.com",
    "console.eu.jumpcloud.com": "api.eu.jumpcloud.com",
    "console.in.jumpcloud.com": "api.in.jumpcloud.com",
}


def events_base_url_for(base_url: str) -> str:
    """The Directory Insights base URL of a console base URL; any other URL (a loopback simulator, a proxy) is
    its own."""
    parts = urlsplit(base_url)
    host = EVENTS_HOSTS.get((parts.hostname or "").lower())
    if host is None:
        return base_url.rstrip("/")
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), "", "", "")).rstrip("/")


def rfc3339(moment: datetime) -> str:
    """A time as the API takes it: UTC, ``Z``, milliseconds."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class EventPage:
    """One page of events, in the query's order, and where the next one starts."""

    events: list[dict[str, Any]]
    search_after: list[Any] | None
    last: bool


def _bad(response: httpx.Response, message: str) -> BadResponseError:
    return BadResponseError(response.status_code, response.request.method, response.request.url.path, message)


def _count_header(response: httpx.Response, name: str) -> int:
    value = response.headers.get(name)
    try:
        number = int(value) if value is not None else -1
    except ValueError:
        number = -1
    if number < 0:
        raise _bad(response, f"{name} header is {value!r}, expected a count")
    return number


def read_page(response: httpx.Response) -> EventPage:
    """A response as an ``EventPage``; ``BadResponseError`` when its body or paging headers are not as documented.
    The counts are compared as numbers (JumpCloud's own serverless app compares the header strings)."""
    events = parse_json(response)
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise _bad(response, "the events body is not a JSON array of objects")
    count, limit = _count_header(response, "X-Result-Count"), _count_header(response, "X-Limit")
    if count != len(events):
        raise _bad(response, f"X-Result-Count is {count} but the page holds {len(events)} events")
    raw = response.headers.get("X-Search_after")
    token: list[Any] | None = None
    if events:
        try:
            token = json.loads(raw) if raw is not None else None
        except ValueError:
            token = None
        if not isinstance(token, list) or not token:
            raise _bad(response, f"X-Search_after is {raw!r}, expected a JSON array")
    return EventPage(events=events, search_after=token, last=count < limit)


def event_query(start: datetime, end: datetime, *, limit: int = DEFAULT_LIMIT,
                services: Sequence[str] = ("directory",)) -> dict[str, Any]:
    """The body of a query for events in [start, end), oldest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if end <= start:
        raise ValueError("end must be after start")
    return {"service": list(services), "start_time": rfc3339(start), "end_time": rfc3339(end), "limit": limit,
            "sort": "ASC"}


async def event_pages(client: JumpCloudClient, start: datetime, end: datetime, *, limit: int = DEFAULT_LIMIT,
                      services: Sequence[str] = ("directory",)) -> AsyncIterator[EventPage]:
    """Every page of the events in [start, end), oldest first; stop iterating to stop reading."""
    query = event_query(start, end, limit=limit, services=services)
    previous: list[Any] | None = None
    while True:
        response = await client.request("POST", EVENTS_PATH, json=query, reads_only=True)
        page = read_page(response)
        if not page.last and page.search_after == previous:
            raise _bad(response, "X-Search_after did not move: the next page would repeat this one")
        yield page
        if page.last:
            return
        previous = page.search_after
        query = {**query, "search_after": page.search_after}
