"""The shape every resource syncer has, after baton-sdk: list resources, then list each resource's grants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient

T = TypeVar("T")


class Syncer(Protocol):
    """One resource type of one connector.

    ``grant_source`` names the grants the syncer owns (None when it lists no grants): only the part that owns
    a grant may mark it deleted.
    """

    resource_type: str
    grant_source: str | None

    def __init__(self, client: JumpCloudClient) -> None: ...

    def resources(self) -> AsyncIterator[list[ResourceRecord]]:
        """Pages of resources, as JumpCloud returns them."""

    def grants(self, resources: list[ResourceRecord]) -> AsyncIterator[tuple[str, list[GrantRecord]]]:
        """For each of ``resources``: its id and every grant on it (the complete set for that resource)."""


async def collect(pages: AsyncIterator[list[dict]]) -> list[dict]:
    """All records of one listing (one resource's members or bindings: small, so held in memory)."""
    out: list[dict] = []
    async for page in pages:
        out.extend(page)
    return out


async def as_completed_map(items: Iterable[T], fetch: Callable[[T], Awaitable]) -> AsyncIterator:
    """Run ``fetch`` for every item concurrently and yield the results as they complete.

    The client's in-flight bound keeps the number of open requests in check; if one fetch fails, the others
    are cancelled and the error propagates, failing the part.
    """
    tasks = [asyncio.ensure_future(fetch(item)) for item in items]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def connection_target_ids(connections: list[dict], target_type: str) -> list[str]:
    """The ids of the ``to`` ends of graph connections of the given type (``user`` or ``user_group``)."""
    ids = []
    for connection in connections:
        to = connection.get("to") or {}
        if to.get("type") == target_type and isinstance(to.get("id"), str) and to["id"]:
            ids.append(to["id"])
    return ids
