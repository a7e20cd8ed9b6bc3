"""The shape every resource syncer has, after baton-sdk: list resources, then list each resource's grants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import NotFoundError
from jumpcloud.paging import Page, Resume


class Syncer(Protocol):
    """One resource type of one connector.

    ``grant_source`` names the grants the syncer owns (None when it lists no grants): only the part that owns
    a grant may mark it deleted.
    """

    resource_type: str
    grant_source: str | None

    def __init__(self, client: JumpCloudClient) -> None: ...

    def resources(self, resume: Resume | None = None) -> AsyncIterator[Page[ResourceRecord]]:
        """Pages of resources, as JumpCloud returns them; with ``resume``, but the pages an earlier attempt of the
        part wrote (``pipeline.checkpoint``)."""

    async def grants(self, resource: ResourceRecord) -> list[GrantRecord]:
        """Every grant on ``resource`` (the complete set for that resource). The pipeline runs many of these at
        once, across pages of resources (``pipeline.streaming.FetchWindow``); the client bounds the requests."""

    async def get(self, resource_id: str) -> ResourceRecord | None:
        """One resource read back by id (the incremental refresh), or None when JumpCloud says 404. Admins have no
        such endpoint; the refresh lists them again (there are few)."""


async def get_or_none(client: JumpCloudClient, path: str, object_id: str) -> dict | None:
    """One object by id, or None when JumpCloud answers 404 (it is gone). Used by the incremental refresh, which
    reads back exactly the objects that events named (``pipeline.incremental``)."""
    try:
        record = await client.get_json(path, path_params={"id": object_id})
    except NotFoundError:
        return None
    return record if isinstance(record, dict) else None


async def collect_or_none(pages: AsyncIterator[list[dict]]) -> list[dict] | None:
    """``collect``, or None when the listing's object is gone (404): a user's or group's own listings, read back
    by the incremental refresh."""
    try:
        return await collect(pages)
    except NotFoundError:
        return None


async def collect(pages: AsyncIterator[list[dict]]) -> list[dict]:
    """All records of one listing (one resource's members or bindings: small, so held in memory)."""
    out: list[dict] = []
    async for page in pages:
        out.extend(page)
    return out


def connection_target_ids(connections: list[dict], target_type: str) -> list[str]:
    """The ids of the ``to`` ends of graph connections of the given type (``user`` or ``user_group``)."""
    ids = []
    for connection in connections:
        to = connection.get("to") or {}
        if to.get("type") == target_type and isinstance(to.get("id"), str) and to["id"]:
            ids.append(to["id"])
    return ids
