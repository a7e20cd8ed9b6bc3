"""What a syncer produces: normalised resources and grants, independent of JumpCloud's record shapes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

RESOURCE_TYPES = ("user", "admin", "group", "app", "role")


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    type: str
    id: str
    name: str
    email: str | None = None
    status: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """A digest of everything stored for the resource, to skip writing rows that did not change."""
        payload = json.dumps([self.name, self.email, self.status, self.profile], sort_keys=True,
                             separators=(",", ":"), default=str, ensure_ascii=False)
        return hashlib.sha1(payload.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """``principal`` holds ``entitlement`` on ``resource``; ``via`` is the group it came through ("" if direct)."""

    resource_type: str
    resource_id: str
    entitlement: str
    principal_type: str
    principal_id: str
    via: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The identity of a grant within one resource."""
        return (self.entitlement, self.principal_type, self.principal_id, self.via)
