"""System users: the people. ``GET /api/systemusers`` (v1 envelope)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connector.base import get_or_none
from connector.fields import clean, compact, flag, full_name, object_field, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.paging import Page, Resume

_STATES = {"ACTIVATED": "active", "STAGED": "staged", "SUSPENDED": "suspended"}


def user_status(record: dict[str, Any]) -> str:
    """One of ``active``, ``staged``, ``suspended``, ``locked``.

    Suspension wins over everything, then a locked account; older records lack ``state``, so it is derived
    from the ``suspended`` and ``activated`` flags. An unknown state is kept, lowercased.
    """
    state = text(record, "state")
    if state == "SUSPENDED" or flag(record, "suspended"):
        return "suspended"
    if flag(record, "account_locked"):
        return "locked"
    if state is not None:
        return _STATES.get(state.upper(), state.lower()[:32])  # an unknown state is kept, within the column
    if flag(record, "activated") is False:
        return "staged"
    return "active"


def map_user(record: dict[str, Any]) -> ResourceRecord:
    mfa = object_field(record, "mfa")
    first, last = text(record, "firstname"), text(record, "lastname")
    email = text(record, "email")
    username = text(record, "username")
    user_id = record_id(record)
    name = text(record, "displayname") or full_name(first, last) or username or email or user_id
    attributes = record.get("attributes")
    profile = compact({
        "username": username,
        "firstname": first,
        "lastname": last,
        "displayname": text(record, "displayname"),
        "alternate_email": text(record, "alternateEmail"),
        "department": text(record, "department"),
        "job_title": text(record, "jobTitle"),
        "employee_type": text(record, "employeeType"),
        "employee_id": text(record, "employeeIdentifier"),
        "company": text(record, "company"),
        "cost_center": text(record, "costCenter"),
        "location": text(record, "location"),
        "manager_id": text(record, "manager"),
        "mfa_configured": flag(mfa, "configured"),
        "mfa_exclusion": flag(mfa, "exclusion"),
        "account_locked": flag(record, "account_locked"),
        "created": text(record, "created"),
        "attributes": clean([a for a in attributes if isinstance(a, dict)]) if isinstance(attributes, list) else None,
    })
    return ResourceRecord(type="user", id=user_id, name=name, email=email, status=user_status(record),
                          profile=profile)


class UserSyncer:
    resource_type = "user"
    grant_source = None

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self, resume: Resume | None = None) -> AsyncIterator[Page[ResourceRecord]]:
        async for page in self.client.list_v1("/api/systemusers", resume=resume):
            yield page.map(map_user)

    async def grants(self, resource: ResourceRecord) -> list[GrantRecord]:
        return []  # pragma: no cover  (users hold grants; they grant nothing; never called: grant_source is None)

    async def get(self, user_id: str) -> ResourceRecord | None:
        record = await get_or_none(self.client, "/api/systemusers/{id}", user_id)
        return None if record is None else map_user(record)
