"""Applications and who may use them. ``GET /api/applications``, ``/api/v2/applications/{id}/associations``.

The app part lists direct bindings only (users and user groups). Access that a user has through a bound
group is derived afterwards, in the database, from the group memberships already fetched
(``pipeline.derived``), so the sync never lists the same membership twice.

Whether JumpCloud provisions users into an app (Identity Management, SCIM) is on no documented object: the
documented v1 application has no such field. The v2 application object (``GET /api/v2/applications``, a path
JumpCloud's spec declares without operations) carries ``provision``, with ``type`` (``"scim"``) and
``groups_supported`` as on the documented catalog template; docs/access.md says what is documented and what is
inferred. The part lists it once (a page per 100 apps) and keeps ``provisioning`` on each app's profile; when
the endpoint is refused (403, 404), apps are written without it and the sync goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from connector.base import collect, collect_or_none, connection_target_ids, get_or_none
from connector.fields import compact, flag, object_field, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import AuthError, NotFoundError
from jumpcloud.paging import Page, Resume

log = logging.getLogger(__name__)


#: An app whose v2 record was not read (the listing was refused): its provisioning is unknown.
UNKNOWN = object()


def provisioning_of(provision: Any) -> dict[str, Any]:
    """The profile keys of an app's ``provision`` object: ``provisioning``, its type lower-cased (``"scim"``), or
    ``"none"`` when the v2 record has no provisioning (null or no key); and ``provisioning_groups`` (whether
    groups are provisioned too). Nothing when the v2 record is ``UNKNOWN``."""
    if provision is UNKNOWN:
        return {}
    kind = text(provision, "type") if isinstance(provision, dict) else None
    if not kind:
        return {"provisioning": "none"}
    return compact({"provisioning": kind.lower()[:32],
                    "provisioning_groups": flag(provision, "groups_supported")})


def map_app(record: dict[str, Any], provision: Any = UNKNOWN) -> ResourceRecord:
    app_id = record_id(record)
    sso = object_field(record, "sso")
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
        **provisioning_of(provision),
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

    async def resources(self, resume: Resume | None = None) -> AsyncIterator[Page[ResourceRecord]]:
        provisions = await self._provisions()
        async for page in self.client.list_v1("/api/applications", resume=resume):
            yield page.map(lambda record: map_app(
                record, UNKNOWN if provisions is None else provisions.get(record_id(record), UNKNOWN)))

    async def _provisions(self) -> dict[str, Any] | None:
        """App id -> its v2 ``provision`` object (None: null or absent), for every app; None when the v2 listing is
        refused (then every app's provisioning is unknown)."""
        found: dict[str, Any] = {}
        try:
            async for page in self.client.list_v2("/api/v2/applications"):
                found.update((record_id(app), app.get("provision")) for app in page if isinstance(app, dict))
        except (NotFoundError, AuthError) as exc:
            log.warning("the v2 application listing was refused; apps are written without provisioning",
                        extra={"status": exc.status})
            return None
        return found

    async def grants(self, app: ResourceRecord) -> list[GrantRecord]:
        path, ids = "/api/v2/applications/{id}/associations", {"id": app.id}
        users, groups = await asyncio.gather(
            collect(self.client.list_v2(path, params={"targets": "user"}, path_params=ids)),
            collect(self.client.list_v2(path, params={"targets": "user_group"}, path_params=ids)))
        return binding_grants(app.id, users, groups)

    async def get(self, app_id: str) -> ResourceRecord | None:
        record, v2 = await asyncio.gather(get_or_none(self.client, "/api/applications/{id}", app_id),
                                          self._v2_app(app_id))
        return None if record is None else map_app(record, UNKNOWN if v2 is None else v2.get("provision"))

    async def _v2_app(self, app_id: str) -> dict | None:
        try:
            return await get_or_none(self.client, "/api/v2/applications/{id}", app_id)
        except AuthError:
            return None

    async def bindings(self, principal_type: str, principal_id: str) -> list[GrantRecord] | None:
        """The direct ``access`` grants of one user or group (the other side of ``grants``), from its own
        ``/associations?targets=application``; None when the user or group is gone."""
        path = "/api/v2/users/{id}/associations" if principal_type == "user" else "/api/v2/usergroups/{id}/associations"
        connections = await collect_or_none(self.client.list_v2(path, params={"targets": "application"},
                                                                 path_params={"id": principal_id}))
        if connections is None:
            return None
        return [GrantRecord("app", app_id, "access", principal_type, principal_id)
                for app_id in dict.fromkeys(connection_target_ids(connections, "application"))]
