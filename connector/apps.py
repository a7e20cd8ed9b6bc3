"""Applications and who may use them. ``GET /api/applications``, ``/api/v2/applications/{id}/associations``.

The app part lists direct bindings only (users and user groups). Access that a user has through a bound
group is derived afterwards, in the database, from the group memberships already fetched
(``pipeline.derived``), so the sync never lists the same membership twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from connector.base import collect, connection_target_ids, get_or_none
from connector.fields import compact, flag, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import NotFoundError


def map_app(record: dict[str, Any]) -> ResourceRecord:
    app_id = record_id(record)
    sso = record.get("sso") if isinstance(record.get("sso"), dict) else {}
    name = text(record, "displayLabel") or text(record, "displayName") or text(record, "name") or app_id
    active = flag(record, "active")
    profile = compact({
        "template": text(record, "name"),
        "display_name": text(record, "displayName"),
        "sso_type": text(sso, "type"),
        "sso_url": text(record, "ssoUrl"),
        "beta": flag(record, "beta"),
        "description": text(record, "description"),
        "created": text(record, "created"),
    })
    status = None if active is None else ("active" if active else "inactive")
    return ResourceRecord(type="app", id=app_id, name=name, status=status, profile=profile)


def binding_grants(app_id: str, user_connections: list[dict], group_connections: list[dict]) -> list[GrantRecord]:
    users = dict.fromkeys(connection_target_ids(user_connections, "user"))
    groups = dict.fromkeys(connection_target_ids(group_connections, "user_group"))
    return ([GrantRecord("app", app_id, "access", "user", u) for u in users]
            + [GrantRecord("app", app_id, "access", "group", g) for g in groups])


class AppSyncer:
    resource_type = "app"
    grant_source = "app"

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self) -> AsyncIterator[list[ResourceRecord]]:
        async for page in self.client.list_v1("/api/applications"):
            yield [map_app(record) for record in page]

    async def grants(self, app: ResourceRecord) -> list[GrantRecord]:
        path, ids = "/api/v2/applications/{id}/associations", {"id": app.id}
        users, groups = await asyncio.gather(
            collect(self.client.list_v2(path, params={"targets": "user"}, path_params=ids)),
            collect(self.client.list_v2(path, params={"targets": "user_group"}, path_params=ids)))
        return binding_grants(app.id, users, groups)

    async def get(self, app_id: str) -> ResourceRecord | None:
        record = await get_or_none(self.client, "/api/applications/{id}", app_id)
        return None if record is None else map_app(record)

    async def bindings(self, principal_type: str, principal_id: str) -> list[GrantRecord] | None:
        """The direct ``access`` grants of one user or group (the other side of ``grants``), from its own
        ``/associations?targets=application``; None when the user or group is gone."""
        path = "/api/v2/users/{id}/associations" if principal_type == "user" else "/api/v2/usergroups/{id}/associations"
        try:
            connections = await collect(self.client.list_v2(path, params={"targets": "application"},
                                                             path_params={"id": principal_id}))
        except NotFoundError:
            return None
        return [GrantRecord("app", app_id, "access", principal_type, principal_id)
                for app_id in dict.fromkeys(connection_target_ids(connections, "application"))]
