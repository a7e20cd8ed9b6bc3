"""One connector: a JumpCloud organisation, the key that reaches it, and how to sync and provision it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.actions import ACTION_NAMES, DEFAULT_ALLOWED_ACTIONS
from config.values import (
    DEFAULT_BASE_URL,
    Duration,
    check_base_url,
    check_name,
    check_org_id,
    parse_cron,
    parse_duration,
    read_api_key,
)
from config.words import noun

#: The full sync's interval when a connector sets none: hourly, or every 6 hours when the incremental refresh
#: from events keeps the data fresh (docs/incremental.md says why).
DEFAULT_INTERVAL = "1h"
DEFAULT_INTERVAL_WITH_EVENTS = "6h"

ResourceType = Literal["user", "admin", "group", "app", "role"]
ALL_RESOURCE_TYPES: tuple[ResourceType, ...] = ("user", "admin", "group", "app", "role")


def _known_actions(value: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [a for a in value if a not in ACTION_NAMES]
    if unknown:
        raise ValueError(f"unknown {noun(len(unknown), 'action')} {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(ACTION_NAMES)}")
    return value


class ApprovalRule(BaseModel):
    """``[[connectors.provisioning.approval]]``: requests for these actions on these targets wait for
    ``approvers`` people other than their requester (provisioning.approvals). No ``actions``: every action; no
    ``targets``: every target. A target pattern is a glob (``*admin*``, ``AWS*``) matched case-insensitively
    against the name of the group, app, role or user the request changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: tuple[str, ...] = ACTION_NAMES
    targets: tuple[str, ...] = ("*",)
    approvers: Literal[1, 2] = 1

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one action (leave actions out for every action)")
        return _known_actions(value)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one pattern (leave targets out for every target)")
        blank = [pattern for pattern in value if not pattern.strip()]
        if blank:
            raise ValueError("a target pattern must not be empty; use \"*\" for every target")
        return tuple(pattern.strip() for pattern in value)


class ProvisioningPolicy(BaseModel):
    """What a connector lets provisioning do. Destructive actions (user.delete, role.set) are off by default.
    ``approval`` rules name the requests that wait for approvers; unapproved ones expire after
    ``approval_expires``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_actions: tuple[str, ...] = DEFAULT_ALLOWED_ACTIONS
    dry_run: bool = False
    max_attempts: int = Field(default=5, ge=1, le=50)
    approval: tuple[ApprovalRule, ...] = ()
    approval_expires: Duration = "72h"

    @field_validator("allowed_actions")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known_actions(value)


class SyncOptions(BaseModel):
    """How to sync and provision an organisation: what a ``[[connectors]]`` entry and an ``[[msp]]`` table's
    ``connector`` sub-table (applied to every organisation it discovers) both say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Duration | None = None
    cron: str | None = None
    resource_types: tuple[ResourceType, ...] = ALL_RESOURCE_TYPES
    max_in_flight: int = Field(default=8, ge=1, le=64)  # per sync part (each part has its own client)
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base: float = Field(default=0.5, ge=0, le=60)
    provisioning: ProvisioningPolicy = ProvisioningPolicy()
    #: The incremental refresh from Directory Insights events (pipeline.incremental, docs/incremental.md).
    events: bool = True
    events_interval: Duration = "1m"
    #: Events this much older than the cursor are read again, so that one that became visible late is caught.
    events_overlap: Duration = "2m"
    #: How long JumpCloud keeps events (90 days; 15 on the smallest plans): an older cursor asks for a full sync.
    events_retention: Duration = "90d"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @field_validator("resource_types")
    @classmethod
    def _resource_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one resource type")
        if "role" in value and "admin" not in value:
            raise ValueError("'role' needs 'admin': roles are read from the admin accounts")
        return tuple(t for t in ALL_RESOURCE_TYPES if t in value)

    @model_validator(mode="after")
    def _interval_or_cron(self) -> SyncOptions:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set interval or cron, not both")
        return self

    @property
    def schedule(self):
        """The Celery schedule of the full sync: ``interval`` or ``cron``; when neither is set, every 6 hours
        with events on (the full sync is then the reconciliation that repairs a lost event), else hourly."""
        if self.cron is not None:
            return parse_cron(self.cron)
        from celery.schedules import schedule

        return schedule(parse_duration(self.interval or (DEFAULT_INTERVAL_WITH_EVENTS if self.events
                                                         else DEFAULT_INTERVAL)))


class KeyOptions(BaseModel):
    """Where the API is and the key that reaches it, with the limits of that key: what a connector and an
    ``[[msp]]`` table both say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = None
    api_key_file: Path | None = None
    ca_bundle: Path | None = None
    #: Where the events API is: by default the events host of ``base_url``'s region (api.jumpcloud.com for
    #: console.jumpcloud.com), or ``base_url`` itself for a loopback simulator or a proxy.
    events_base_url: str | None = None
    #: Fleet-wide limits for the key, shared through Redis by every part on every worker (and, for an MSP
    #: key, by every organisation it reaches).
    shared_max_in_flight: int | None = Field(default=None, ge=1, le=256)
    rate_limit: float | None = Field(default=None, gt=0, le=10000)  # requests per second

    @field_validator("base_url", "events_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return check_base_url(value)

    @model_validator(mode="after")
    def _one_key_source(self) -> KeyOptions:
        if (self.api_key_env is None) == (self.api_key_file is None):
            raise ValueError("set exactly one of api_key_env and api_key_file")
        return self


class ConnectorConfig(SyncOptions, KeyOptions):
    """One JumpCloud organisation and how to sync it."""

    name: str
    org_id: str | None = None
    #: The ``[[msp]]`` table that discovered this organisation; None for a connector of ``[[connectors]]``.
    msp: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("org_id")
    @classmethod
    def _org_id(cls, value: str | None) -> str | None:
        return check_org_id(value)

    @property
    def events_url(self) -> str:
        """The base URL of the Directory Insights API for this connector."""
        from jumpcloud.events import events_base_url_for

        return self.events_base_url or events_base_url_for(self.base_url)

    @property
    def budget_name(self) -> str:
        """The name of the Redis request budget this connector's requests count against: its own, or, for an
        organisation discovered through an MSP key, the MSP's, shared by all its organisations."""
        return f"msp:{self.msp}" if self.msp else self.name

    def api_key(self) -> str:
        """Read the API key from its env var or file. Errors name the source, never the key."""
        return read_api_key(f"connector {self.name!r}", self.api_key_env, self.api_key_file)
