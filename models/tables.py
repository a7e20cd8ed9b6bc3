"""The database schema: connectors, resources, grants, sync runs and their parts.

Keys are JumpCloud's own ids (``external_id``), scoped by connector and type, so an upsert is idempotent.
A resource or grant that JumpCloud stops returning is not removed but gets ``deleted_at``; it loses that
mark when it comes back. ``content_hash`` lets a sync skip rows whose content did not change, so a re-sync of
an unchanged org writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, LargeBinary, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models import states
from models.columns import UTCDateTime
from models.states import PartStatus, RequestStatus


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a table model, for bulk statements that bypass the ORM."""
    return model.__table__  # type: ignore[attr-defined]  # SQLModel's stubs do not declare __table__


def _ts(nullable: bool = False, **kwargs: Any) -> Any:
    """A timestamp column: aware UTC datetimes in Python on every database (models.columns.UTCDateTime)."""
    return Field(sa_type=UTCDateTime, nullable=nullable, **kwargs)


class Connector(SQLModel, table=True):
    """A configured JumpCloud organisation, registered on its first sync. Never holds the API key."""

    __tablename__ = "connectors"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    base_url: str
    org_id: str | None = None
    created_at: datetime = _ts(default_factory=utcnow)
    #: Counts the writes to the connector's resources and grants made outside a sync run (provisioning's
    #: write-through); with the latest sync run it tells whether the data changed (models.dataversion).
    data_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Resource(SQLModel, table=True):
    """An account (user, admin), group, application or role of one connector."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("connector_id", "type", "external_id", name="uq_resources_key"),
        Index("ix_resources_connector_type_deleted", "connector_id", "type", "deleted_at"),
        Index("ix_resources_lookup_name", "connector_id", "type", "name_key"),
        Index("ix_resources_lookup_email", "connector_id", "type", "email_key"),
        Index("ix_resources_lookup_username", "connector_id", "type", "username_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), nullable=False))
    type: str = Field(max_length=16)
    external_id: str = Field(max_length=128)
    name: str
    email: str | None = None
    #: ``name``, ``email`` and a user's ``profile["username"]`` case-folded in Python, for lookups: SQLite's
    #: lower() folds ASCII only, and a JSON field cannot be indexed portably.
    name_key: str = ""
    email_key: str | None = None
    username_key: str | None = None
    status: str | None = Field(default=None, max_length=32)
    linked_user_id: str | None = Field(default=None, max_length=128)
    profile: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    content_hash: str = Field(max_length=40)
    first_seen_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    deleted_at: datetime | None = _ts(nullable=True, default=None)


class Grant(SQLModel, table=True):
    """An entitlement of a resource held by a principal: group ``member``, app ``access``, role ``assigned``.

    ``via`` is ``""`` for a direct grant and the group's id for access that comes through a group (the JSON
    interface shows ``null`` for direct). ``source`` is the sync part that owns the row and may delete it.
    """

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("connector_id", "resource_type", "resource_id", "entitlement",
                         "principal_type", "principal_id", "via", name="uq_grants_key"),
        Index("ix_grants_source", "connector_id", "source", "resource_id"),
        Index("ix_grants_principal", "connector_id", "principal_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), nullable=False))
    resource_type: str = Field(max_length=16)
    resource_id: str = Field(max_length=128)
    entitlement: str = Field(max_length=32)
    principal_type: str = Field(max_length=16)
    principal_id: str = Field(max_length=128)
    via: str = Field(default="", max_length=128)
    source: str = Field(max_length=32)
    first_seen_at: datetime = _ts(default_factory=utcnow)
    deleted_at: datetime | None = _ts(nullable=True, default=None)
    #: When provisioning's write-through last set this row (None: only syncs have). A sync part that began
    #: before leaves the row as written: its listing may predate the change (models.store.GrantWriter).
    written_at: datetime | None = _ts(nullable=True, default=None)


def active_run_predicate(column: str = "status") -> str:
    """The predicate of the partial unique index ``uq_sync_runs_one_active`` (a run in one of these statuses
    holds its connector's one active slot), as literal SQL. SQLite uses a partial index only for a query that
    states its predicate with the same literals (bound parameters do not), so queries take it from here."""
    return "{} IN ({})".format(column, ", ".join(f"'{status}'" for status in states.ACTIVE_RUN_STATUSES))


class SyncRun(SQLModel, table=True):
    """One sync of one connector.

    ``status`` is a ``models.states.RunStatus`` and moves only as ``models.states.RUNS`` lists; ``trigger`` is a
    ``models.states.Trigger``. A partial unique index allows one active run per connector, which is what makes a
    second trigger (a second beat, a manual sync) a recorded skip instead of a duplicate run.
    """

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("uq_sync_runs_one_active", "connector_id", unique=True,
              sqlite_where=text(active_run_predicate()), postgresql_where=text(active_run_predicate())),
        Index("ix_sync_runs_connector_started", "connector_id", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), nullable=False))
    status: str = Field(max_length=16)
    trigger: str = Field(max_length=16)
    task_id: str | None = Field(default=None, max_length=64, index=True)
    started_at: datetime = _ts(default_factory=utcnow)
    finished_at: datetime | None = _ts(nullable=True, default=None)
    error: str | None = None


class SyncPart(SQLModel, table=True):
    """One resource type (a ``fetch`` part) or one derived step (a ``derive`` part) of a run.

    ``phase`` is a ``models.states.PartPhase``; ``status`` a ``models.states.PartStatus``, which moves only as
    ``models.states.PARTS`` lists.
    """

    __tablename__ = "sync_parts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_sync_parts_run_name"),
                      # The reaper looks for running parts whose lease ran out (pipeline.reaper).
                      Index("ix_sync_parts_status_heartbeat", "status", "heartbeat_at"))

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("sync_runs.id"), nullable=False, index=True))
    name: str = Field(max_length=32)
    phase: str = Field(max_length=8)
    status: str = Field(default=PartStatus.PENDING, max_length=16)
    attempt: int = 0
    started_at: datetime | None = _ts(nullable=True, default=None)
    finished_at: datetime | None = _ts(nullable=True, default=None)
    requests: int = 0
    counts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    error: str | None = None
    #: The part's lease: renewed while a process runs it (pipeline.claims.PartLease); a running part whose
    #: lease ran out is handed over by the reaper, whatever the broker's visibility timeout.
    heartbeat_at: datetime | None = _ts(nullable=True, default=None)
    #: A fetch part's checkpoint while it runs (pipeline.checkpoint): the pages written and its writers' state, so
    #: that an attempt taking the part over lists only the rest. Cleared when the part ends.
    checkpoint: dict[str, Any] | None = Field(default=None, sa_type=JSON)




class ProvisioningRequest(SQLModel, table=True):
    """One access change asked of one connector, from acceptance to outcome.

    The row is written before any message is sent, so nothing accepted is lost: a message that never reached
    the broker is sent again by the relay. ``status`` is a ``models.states.RequestStatus`` and moves only as
    ``models.states.REQUESTS`` lists.
    ``connector`` is the name as asked, so a request for an unknown connector is recorded too.
    """

    __tablename__ = "provisioning_requests"
    __table_args__ = (
        UniqueConstraint("connector", "idempotency_key", name="uq_provisioning_idempotency"),
        Index("ix_provisioning_status_enqueued", "status", "enqueued_at"),
        # The audit trail (provisioning.audit) reads submissions and outcomes by time.
        Index("ix_provisioning_created_at", "created_at"),
        Index("ix_provisioning_finished_at", "finished_at"),
        # The line per target (provisioning.ordering): the claim's check and the hand-off read it.
        Index("ix_provisioning_target", "connector", "target_key", "status"),
    )

    id: str = Field(primary_key=True, max_length=32)
    connector: str = Field(max_length=128)
    action: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    idempotency_key: str | None = Field(default=None, max_length=256)
    requested_by: str | None = Field(default=None, max_length=256)
    #: Whom a caller (a ticketing system's token) says it asks for; recorded as said, apart from
    #: ``requested_by``, which names the caller itself and is never the caller's own words.
    on_behalf_of: str | None = Field(default=None, max_length=256)
    status: str = Field(default=RequestStatus.PENDING, max_length=32)
    dry_run: bool = False
    attempts: int = 0
    last_error: str | None = None
    result: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    claimed_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    enqueued_at: datetime | None = _ts(nullable=True, default=None)
    started_at: datetime | None = _ts(nullable=True, default=None)
    finished_at: datetime | None = _ts(nullable=True, default=None)
    #: How many distinct approvers the connector's policy wanted when the request was accepted (None: none),
    #: and when it expires unless they approved it by then (provisioning.approvals).
    approvals_required: int | None = None
    approval_expires_at: datetime | None = _ts(nullable=True, default=None)
    #: The account the request changes, ``type:id`` (provisioning.ordering): requests on one target apply one at
    #: a time, in the order they were recorded. None: a dry run, or a request that was never valid.
    target_key: str | None = Field(default=None, max_length=256)


class ProvisioningDecision(SQLModel, table=True):
    """One approver's decision on a request that awaited approval: ``approve`` or ``deny``, by whom, when.

    A principal decides a request once (the unique constraint); the rows are never updated or removed, so they
    are the record of who let an access change through.
    """

    __tablename__ = "provisioning_decisions"
    __table_args__ = (UniqueConstraint("request_id", "decided_by", name="uq_provisioning_decision_by"),
                      Index("ix_provisioning_decisions_decided_at", "decided_at"))

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="provisioning_requests.id", max_length=32)
    decision: str = Field(max_length=16)
    decided_by: str = Field(max_length=256)
    decided_at: datetime = _ts(default_factory=utcnow)
    comment: str | None = Field(default=None, max_length=2000)


class ProvisioningRetry(SQLModel, table=True):
    """One retry of a failed request: by whom, when (``provisioning.requests.retry``). Written in the transaction
    that puts the request back to pending and never changed, so the audit names who sent a change again."""

    __tablename__ = "provisioning_retries"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="provisioning_requests.id", max_length=32, index=True)
    retried_by: str = Field(max_length=256)
    retried_at: datetime = _ts(default_factory=utcnow, index=True)


class ApiToken(SQLModel, table=True):
    """An API token (auth.tokens): its public id, name and scopes, and the SHA-256 digest of its secret, never
    the secret itself. A name is never reused, so ``token:<name>`` in ``requested_by`` names one token."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=12)
    name: str = Field(unique=True, max_length=128)
    secret_hash: str = Field(max_length=64)
    #: The scopes as canonical text (auth.scopes), e.g. ``["provision:acme:group.add-member", "read:*"]``.
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _ts(default_factory=utcnow)
    created_by: str = Field(max_length=256)
    expires_at: datetime | None = _ts(nullable=True, default=None)
    revoked_at: datetime | None = _ts(nullable=True, default=None)
    #: Written at most once a minute per token (auth.tokens.LAST_USED_RESOLUTION).
    last_used_at: datetime | None = _ts(nullable=True, default=None)


class DeletionApproval(SQLModel, table=True):
    """An operator's go-ahead for one mass deletion that the safety valve held.

    Used by the next run of that connector and type within a day; a stale approval must not wave through a
    future outage.
    """

    __tablename__ = "deletion_approvals"

    id: int | None = Field(default=None, primary_key=True)
    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), nullable=False, index=True))
    part: str = Field(max_length=32)
    approved_by: str | None = Field(default=None, max_length=256)
    created_at: datetime = _ts(default_factory=utcnow)
    used_by_run_id: int | None = None


class Change(SQLModel, table=True):
    """One change seen by a sync (or made by provisioning): a resource or grant created, updated, deleted or
    undeleted. Updates keep only the fields that changed, as ``{"field": [old, new]}``; nothing is stored for
    what did not change. The first sync of a type is the baseline and records nothing here; its parts' counts
    say what it stored (``models.history.baselines``)."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_connector_at", "connector_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), nullable=False))
    run_id: int | None = None
    request_id: str | None = Field(default=None, max_length=32)
    at: datetime = _ts(default_factory=utcnow)
    subject: str = Field(max_length=8)          # resource | grant
    change: str = Field(max_length=16)          # created | updated | deleted | undeleted
    resource_type: str = Field(max_length=16)
    resource_id: str = Field(max_length=128)
    entitlement: str | None = Field(default=None, max_length=32)
    principal_type: str | None = Field(default=None, max_length=16)
    principal_id: str | None = Field(default=None, max_length=128)
    via: str | None = Field(default=None, max_length=128)
    fields: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class EventCursor(SQLModel, table=True):
    """Where a connector's incremental refresh from Directory Insights events stands (pipeline.incremental).

    Every change that happened before ``cursor`` is in the database; events from ``cursor`` minus the overlap
    window on are read again by the next refresh, and ``seen`` holds those of them already applied (event id
    -> its timestamp in epoch ms), so a late event is still caught and an event read twice is applied once. The other columns describe the last
    refresh, for ``jumpsync status``.
    """

    __tablename__ = "event_cursors"

    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), primary_key=True))
    cursor: datetime | None = _ts(nullable=True, default=None)
    seen: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    refreshed_at: datetime | None = _ts(nullable=True, default=None)
    #: A ``models.states.RefreshOutcome`` (docs/incremental.md).
    outcome: str | None = Field(default=None, max_length=16)
    reason: str | None = None
    run_id: int | None = None
    requests: int = 0
    events: int = 0        # events read for the first time
    reads: int = 0         # objects read back from the API
    lag_seconds: float | None = None  # the oldest applied event's age when its change was written
    full_sync_asked_at: datetime | None = _ts(nullable=True, default=None)


class MspOrganization(SQLModel, table=True):
    """An organisation an ``[[msp]]`` key listed (msp.discovery), and the connector name it was given.

    The name is chosen once, when the organisation is first listed, and kept: a renamed organisation keeps its
    connector (and its data); a name is never given to another organisation. The connector runs while the
    organisation is listed (``removed_at`` null) and the table's ``include``/``exclude`` take it.
    """

    __tablename__ = "msp_organizations"
    __table_args__ = (UniqueConstraint("msp", "org_id"),)

    id: int | None = Field(default=None, primary_key=True)
    msp: str = Field(max_length=63)
    org_id: str = Field(max_length=24)
    connector: str = Field(unique=True, max_length=63)
    display_name: str
    first_seen_at: datetime = _ts(default_factory=utcnow)
    last_seen_at: datetime = _ts(default_factory=utcnow)
    #: When a complete listing first lacked it; cleared when it is listed again.
    missing_since: datetime | None = _ts(nullable=True, default=None)
    #: When it had been missing ``remove_after``: its connector stops.
    removed_at: datetime | None = _ts(nullable=True, default=None)


class MspListing(SQLModel, table=True):
    """The last organisations listing of each ``[[msp]]`` key, for ``jumpsync msp`` and the metrics."""

    __tablename__ = "msp_listings"

    msp: str = Field(primary_key=True, max_length=63)
    listed_at: datetime = _ts(default_factory=utcnow)
    #: ok | failed
    outcome: str = Field(max_length=16)
    error: str | None = None
    organizations: int = 0
    requests: int = 0


class AccessSnapshot(SQLModel, table=True):
    """The stored rendering of a connector's access report and export (access.snapshots), and the data
    version it was rendered at: it is served only while the connector's data version is still that one.

    The version is the connector's latest (not skipped) sync run and ``Connector.data_version``: every write to
    resources and grants happens in a sync run or bumps that counter (models.dataversion).
    """

    __tablename__ = "access_snapshots"

    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), primary_key=True))
    render_id: str = Field(max_length=32)
    #: Which code rendered it (access.snapshots.renderer_version): another version's is not served.
    renderer: str = Field(max_length=40)
    run_id: int | None = None
    data_version: int = 0
    rendered_at: datetime = _ts(default_factory=utcnow)
    render_seconds: float = 0.0
    export_rows: int = 0  # grants in the export
    #: artifact name ("export.csv", ...) -> how many blocks it has.
    artifacts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)


class AccessSnapshotBlock(SQLModel, table=True):
    """One block of a stored rendering: the artifact's bytes from ``seq``'s place on, compressed (zstd)."""

    __tablename__ = "access_snapshot_blocks"

    connector_id: int = Field(sa_column=Column(Integer, ForeignKey("connectors.id"), primary_key=True))
    render_id: str = Field(max_length=32, primary_key=True)
    artifact: str = Field(max_length=32, primary_key=True)
    seq: int = Field(primary_key=True)
    body: bytes = Field(sa_type=LargeBinary)
