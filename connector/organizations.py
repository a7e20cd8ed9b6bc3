"""The organisations an MSP administrator's key reaches: ``GET /api/organizations`` (v1 envelope, records
``{"_id", "displayName", "logoUrl"}``), listed without ``x-org-id``. What ``msp.discovery`` turns into
connectors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from connector.fields import text
from jumpcloud.client import JumpCloudClient
from jumpcloud.ids import is_object_id

ORGANIZATIONS_PATH = "/api/organizations"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Organization:
    id: str
    display_name: str


def map_organization(record: dict[str, Any]) -> Organization | None:
    """An organisation, or None for a record without a JumpCloud object id (24 hex characters: nothing else
    can go in ``x-org-id``). A blank name reads as the id, so every organisation has something to match filters
    against and to show."""
    org_id = (text(record, "_id") or text(record, "id") or "").lower()
    if not is_object_id(org_id):
        log.warning("organisation listing: a record without a valid id skipped", extra={"id": org_id[:64]})
        return None
    return Organization(id=org_id, display_name=text(record, "displayName") or org_id)


async def list_organizations(client: JumpCloudClient) -> list[Organization]:
    """Every organisation of the listing, each once, in id order."""
    found: dict[str, Organization] = {}
    async for page in client.list_v1(ORGANIZATIONS_PATH):
        for record in page:
            organization = map_organization(record) if isinstance(record, dict) else None
            if organization is not None:
                found.setdefault(organization.id, organization)
    return [found[org_id] for org_id in sorted(found)]
