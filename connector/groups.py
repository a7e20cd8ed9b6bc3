"""User groups and their direct members. ``GET /api/v2/usergroups``, ``.../{id}/members``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connector.base import collect, collect_or_none, connection_target_ids, get_or_none
from connector.fields import compact, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.paging import Page, Resume


def map_group(record: dict[str, Any]) -> ResourceRecord:
    group_id = record_id(record)
    profile = compact({
        "description": text(record, "description"),
        "email": text(record, "email"),
        "membership_method": text(record, "membershipMethod"),
    })
    return ResourceRecord(type="group", id=group_id, name=text(record, "name") or group_id, profile=profile)


def member_grants(group_id: str, connections: list[dict]) -> list[GrantRecord]:
    return [GrantRecord("group", group_id, "member", "user", user_id)
            for user_id in dict.fromkeys(connection_target_ids(connections, "user"))]


def membership_grants(user_id: str, groups: list[dict]) -> list[GrantRecord]:
    """A user's ``member`` grants from ``/users/{id}/memberof`` (GraphObjectWithPaths): the user groups it is in.
    User groups do not nest, so every such group is a direct membership, as ``/usergroups/{id}/members`` has it."""
    ids = (g.get("id") for g in groups if g.get("type") == "user_group")
    return [GrantRecord("group", group_id, "member", "user", user_id)
            for group_id in dict.fromkeys(i for i in ids if isinstance(i, str) and i)]


class GroupSyncer:
    resource_type = "group"
    grant_source = "group"

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self, resume: Resume | None = None) -> AsyncIterator[Page[ResourceRecord]]:
        # `name` is unique per org and is what the real service sorts user groups by: it refuses `sort=id`.
        async for page in self.client.list_v2("/api/v2/usergroups", params={"sort": "name"}, resume=resume):
            yield page.map(map_group)

    async def grants(self, group: ResourceRecord) -> list[GrantRecord]:
        connections = await collect(self.client.list_v2("/api/v2/usergroups/{id}/members",
                                                          path_params={"id": group.id}))
        return member_grants(group.id, connections)

    async def get(self, group_id: str) -> ResourceRecord | None:
        record = await get_or_none(self.client, "/api/v2/usergroups/{id}", group_id)
        return None if record is None else map_group(record)

    async def memberships(self, user_id: str) -> list[GrantRecord] | None:
        """Every ``member`` grant the user holds (the other side of ``grants``), or None when the user is gone."""
        groups = await collect_or_none(self.client.list_v2("/api/v2/users/{id}/memberof",
                                                           path_params={"id": user_id}))
        return None if groups is None else membership_grants(user_id, groups)
