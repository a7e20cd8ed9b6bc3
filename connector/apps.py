"""Applications and who may use them. ``GET /api/applications``, ``/api/v2/applications/{id}/associations``.

The app part lists direct bindings only (users and user groups). Access that a user has through a bound
group is derived afterwards from the group memberships already fetched (``derive_access_via_groups``), so
the sync never lists the same membership twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from connector.base import as_completed_map, collect, connection_target_ids
from connector.fields import compact, flag, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient


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


def derive_access_via_groups(app_groups: Iterable[tuple[str, str]],
                             group_members: Mapping[str, Iterable[str]]) -> dict[str, list[GrantRecord]]:
    """For each (app, bound group): an ``access`` grant to every member of the group, ``via`` that group."""
    out: dict[str, list[GrantRecord]] = {}
    for app_id, group_id in app_groups:
        grants = out.setdefault(app_id, [])
        grants.extend(GrantRecord("app", app_id, "access", "user", user_id, via=group_id)
                      for user_id in group_members.get(group_id, ()))
    return out


class AppSyncer:
    resource_type = "app"
    grant_source = "app"

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self) -> AsyncIterator[list[ResourceRecord]]:
        async for page in self.client.list_v1("/api/applications"):
            yield [map_app(record) for record in page]

    async def _bindings(self, app: ResourceRecord) -> tuple[str, list[GrantRecord]]:
        path, ids = "/api/v2/applications/{id}/associations", {"id": app.id}
        users = await collect(self.client.list_v2(path, params={"targets": "user"}, path_params=ids))
        groups = await collect(self.client.list_v2(path, params={"targets": "user_group"}, path_params=ids))
        return app.id, binding_grants(app.id, users, groups)

    async def grants(self, resources: list[ResourceRecord]) -> AsyncIterator[tuple[str, list[GrantRecord]]]:
        async for result in as_completed_map(resources, self._bindings):
            yield result
