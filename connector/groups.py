"""User groups and their direct members. ``GET /api/v2/usergroups``, ``.../{id}/members``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connector.base import collect, connection_target_ids
from connector.fields import compact, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient


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


class GroupSyncer:
    resource_type = "group"
    grant_source = "group"

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self) -> AsyncIterator[list[ResourceRecord]]:
        async for page in self.client.list_v2("/api/v2/usergroups", params={"sort": "id"}):
            yield [map_group(record) for record in page]

    async def grants(self, group: ResourceRecord) -> list[GrantRecord]:
        connections = await collect(self.client.list_v2("/api/v2/usergroups/{id}/members",
                                                          path_params={"id": group.id}))
        return member_grants(group.id, connections)
