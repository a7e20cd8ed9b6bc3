"""Administrators: separate accounts with their own ids (``GET /api/users``), no HR profile.

A person who is both an admin and a user has two accounts; the admin account links to the user with the
same email, compared case-insensitively. The link is made after both lists are in (see ``link_admins``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from connector.fields import clean, compact, flag, full_name, record_id, text
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.paging import Page, Resume


def admin_role_names(record: dict[str, Any]) -> list[str]:
    """The role names an admin record carries: ``roleName``, else the entries of ``roleNames``."""
    primary = text(record, "roleName")
    if primary:
        return [primary]
    names = record.get("roleNames")
    if isinstance(names, list):
        return [clean(n).strip() for n in names if isinstance(n, str) and clean(n).strip()]
    return []


def map_admin(record: dict[str, Any]) -> ResourceRecord:
    first, last = text(record, "firstname"), text(record, "lastname")
    email = text(record, "email")
    admin_id = record_id(record)
    profile = compact({
        "firstname": first,
        "lastname": last,
        "role_names": admin_role_names(record),
        "role_id": text(record, "role"),
        "mfa_enabled": flag(record, "enableMultiFactor"),
        "totp_enrolled": flag(record, "totpEnrolled"),
        "organization": text(record, "organization"),
        "created": text(record, "created"),
    })
    status = "suspended" if flag(record, "suspended") else "active"
    return ResourceRecord(type="admin", id=admin_id, name=full_name(first, last) or email or admin_id,
                          email=email, status=status, profile=profile)


def link_admins(admins: Iterable[tuple[str, str | None]],
                users: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    """Map each admin id to the id of the user with the same email (case-insensitive), or None.

    An email shared by several users (JumpCloud forbids it, but data is untidy) links to none of them rather
    than to a guess.
    """
    by_email: dict[str, str | None] = {}
    for user_id, email in users:
        if not email:
            continue
        key = email.strip().casefold()
        by_email[key] = None if key in by_email else user_id
    return {admin_id: by_email.get(email.strip().casefold()) if email else None for admin_id, email in admins}


class AdminSyncer:
    resource_type = "admin"
    grant_source = None

    def __init__(self, client: JumpCloudClient) -> None:
        self.client = client

    async def resources(self, resume: Resume | None = None) -> AsyncIterator[Page[ResourceRecord]]:
        async for page in self.client.list_v1("/api/users", resume=resume):
            yield page.map(map_admin)

    async def grants(self, resource: ResourceRecord) -> list[GrantRecord]:
        return []  # pragma: no cover  (role grants are derived from the admin records; see connector.roles; never called: grant_source is None)
