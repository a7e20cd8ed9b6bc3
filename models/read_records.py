"""What the read queries (``models.queries``) return: frozen records, statuses as ``models.states`` enums.

Callers read fields, not string keys, so a renamed or mistyped field is a type error. ``to_json()`` is the
record's shape in the CLI's JSON output (docs/cli-json.md), a documented, stable interface: keys are added,
never renamed or removed, and come in the order shown there. Timestamps are aware UTC datetimes
(``models.columns.UTCDateTime``), rendered by ``models.columns.iso``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.columns import iso
from models.states import PartPhase, PartStatus, RefreshOutcome, RequestStatus, RunStatus, Trigger

#: Resource types with an account's email and status.
ACCOUNT_TYPES = ("user", "admin")


@dataclass(frozen=True)
class StoredResource:
    """A stored resource (``jumpsync resources``). ``status`` is JumpCloud's word for an account or an app."""

    type: str
    id: str
    name: str
    email: str | None
    status: str | None
    linked_user_id: str | None
    deleted_at: datetime | None
    first_seen_at: datetime
    updated_at: datetime
    profile: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_json(self) -> dict[str, Any]:
        """Accounts have ``email`` and ``status``, admins ``linked_user_id``, apps ``status``."""
        item: dict[str, Any] = {"type": self.type, "id": self.id, "name": self.name}
        if self.type in ACCOUNT_TYPES:
            item["email"] = self.email
            item["status"] = self.status
        if self.type == "admin":
            item["linked_user_id"] = self.linked_user_id
        if self.type == "app":
            item["status"] = self.status
        return item | {"deleted": self.deleted, "deleted_at": iso(self.deleted_at),
                       "first_seen_at": iso(self.first_seen_at), "updated_at": iso(self.updated_at),
                       "profile": self.profile}


@dataclass(frozen=True)
class StoredGrant:
    """A stored grant (``jumpsync grants``); ``via`` is None for a direct grant. The names are those of the
    stored resources the ids refer to (None when the database has no such resource), so that a person reads
    ``group:Engineering`` where the grant holds an id."""

    resource_type: str
    resource_id: str
    entitlement: str
    principal_type: str
    principal_id: str
    via: str | None
    deleted_at: datetime | None
    first_seen_at: datetime
    resource_name: str | None = None
    principal_name: str | None = None
    via_name: str | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_json(self) -> dict[str, Any]:
        return {"resource_type": self.resource_type, "resource_id": self.resource_id,
                "entitlement": self.entitlement, "principal_type": self.principal_type,
                "principal_id": self.principal_id, "via": self.via, "deleted": self.deleted,
                "deleted_at": iso(self.deleted_at), "first_seen_at": iso(self.first_seen_at),
                "resource_name": self.resource_name, "principal_name": self.principal_name,
                "via_name": self.via_name}


@dataclass(frozen=True)
class BaselineRecord:
    """What a run stored as the baseline of the types it synced first (``jumpsync changes``): those rows were
    stored without history, so the history of those types starts at this run. ``first``: the connector's
    earliest baseline, its first sync."""

    run_id: int
    started_at: datetime
    first: bool
    resources: dict[str, int]
    grants: int

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.resources)


@dataclass(frozen=True)
class PartRecord:
    """One part of a sync run."""

    name: str
    phase: PartPhase
    status: PartStatus
    attempt: int
    requests: int
    counts: dict[str, int]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase, "status": self.status, "attempt": self.attempt,
                "requests": self.requests, "counts": self.counts, "error": self.error,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at)}


@dataclass(frozen=True)
class RunRecord:
    """A sync run and its parts (``status``'s ``last_run``, ``sync --wait``)."""

    id: int
    status: RunStatus
    trigger: Trigger
    task_id: str | None
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    parts: tuple[PartRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "trigger": self.trigger, "task_id": self.task_id,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "error": self.error,
                "parts": [part.to_json() for part in self.parts]}


@dataclass(frozen=True)
class RefreshRecord:
    """The last incremental refresh of a connector (``status``'s ``incremental``, ``sync --events --wait``)."""

    refreshed_at: datetime | None
    outcome: RefreshOutcome | None
    reason: str | None
    cursor: datetime | None
    cursor_age_seconds: float | None
    run_id: int | None
    requests: int
    events: int
    reads: int
    lag_seconds: float | None
    full_sync_asked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"refreshed_at": iso(self.refreshed_at), "outcome": self.outcome, "reason": self.reason,
                "cursor": iso(self.cursor), "cursor_age_seconds": self.cursor_age_seconds, "run_id": self.run_id,
                "requests": self.requests, "events": self.events, "reads": self.reads,
                "lag_seconds": self.lag_seconds, "full_sync_asked_at": iso(self.full_sync_asked_at)}


@dataclass(frozen=True)
class ConnectorStatus:
    """One connector in ``jumpsync status``, as the database knows it (the CLI adds the schedule and the rest).

    ``synced`` is whether the database has the connector at all; only then is ``incremental`` in the JSON.
    """

    connector: str
    configured: bool
    synced: bool = False
    last_run: RunRecord | None = None
    last_success_at: datetime | None = None
    resources: dict[str, int] = field(default_factory=dict)
    grants: int = 0
    provisioning: dict[RequestStatus, int] = field(default_factory=dict)
    incremental: RefreshRecord | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "connector": self.connector, "configured": self.configured,
            "last_run": self.last_run.to_json() if self.last_run else None,
            "last_success_at": iso(self.last_success_at), "resources": self.resources, "grants": self.grants,
            "provisioning": self.provisioning}
        if self.synced:
            entry["incremental"] = self.incremental.to_json() if self.incremental else None
        return entry


@dataclass(frozen=True)
class HeldPart:
    """A part whose deletions the safety valve holds, in a connector's latest finished run."""

    connector: str
    run_id: int
    part: str
    finished_at: datetime | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"connector": self.connector, "run_id": self.run_id, "part": self.part,
                "finished_at": iso(self.finished_at), "error": self.error}


@dataclass(frozen=True)
class MspSnapshot:
    """Per MSP key: its organisations by state (``listed``, ``missing``, ``removed``), and its last listing as
    (succeeded, when in seconds since the epoch)."""

    organizations: dict[tuple[str, str], int]
    listings: dict[str, tuple[bool, float]]


@dataclass(frozen=True)
class MetricsSnapshot:
    """What the metrics exporter reports from the database (telemetry.metrics.DatabaseCollector)."""

    resources: dict[tuple[str, str], int]
    grants: dict[tuple[str, str], int]
    last_success: dict[str, float]
    oldest_pending_seconds: float
    msp: MspSnapshot
    #: Age of the oldest request awaiting approval (0 when none): approvers are not deciding.
    oldest_awaiting_approval_seconds: float = 0.0
