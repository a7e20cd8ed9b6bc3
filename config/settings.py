"""Settings and the connector config file.

Two sources, one result:

* the TOML file (``--config``, ``JUMPSYNC_CONFIG``, default ``./jumpsync.toml``) holds the connectors and may
  hold the database and broker URLs;
* environment variables ``JUMPSYNC_DATABASE_URL`` and ``JUMPSYNC_BROKER_URL`` override the file.

API keys are never in the file: a connector names the env var (``api_key_env``) or the file (``api_key_file``)
that holds its key, and the key is read only where a request is about to be made (``ConnectorConfig.api_key``).

Errors are reported at start-up as one ``ConfigError`` that names the file and the key, e.g.
``jumpsync.toml: connectors[1].interval: '15 minutes' is not a duration like 30s, 15m, 2h or 1h30m``.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.actions import ACTION_NAMES, DEFAULT_ALLOWED_ACTIONS

DEFAULT_BASE_URL = "https://console.jumpcloud.com"
DEFAULT_DATABASE_URL = "sqlite:///./jumpsync.db"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CONFIG_PATH = Path("jumpsync.toml")
#: The full sync's interval when a connector sets none: hourly, or every 6 hours when the incremental refresh
#: from events keeps the data fresh (docs/incremental.md says why).
DEFAULT_INTERVAL = "1h"
DEFAULT_INTERVAL_WITH_EVENTS = "6h"

ResourceType = Literal["user", "admin", "group", "app", "role"]
ALL_RESOURCE_TYPES: tuple[str, ...] = ("user", "admin", "group", "app", "role")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ORG_ID = re.compile(r"^[0-9a-f]{24}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(Exception):
    """A configuration problem, with the file and key it concerns in the message."""


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``2h``, ``1d`` or combinations such as ``1h30m``."""
    match = _DURATION.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value < timedelta(seconds=10):
        raise ValueError(f"{text!r} is shorter than the 10s minimum")
    return value


def _checked_duration(value: str) -> str:
    parse_duration(value)
    return value


#: A duration in the config file (``30s``, ``15m``, ``1h30m``), checked when the file is read.
Duration = Annotated[str, AfterValidator(_checked_duration)]


def parse_cron(text: str):
    """Parse a five-field cron expression (minute hour day-of-month month day-of-week) into a Celery crontab."""
    from celery.schedules import crontab  # imported here: every CLI command loads this module, few need Celery

    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{text!r} is not a cron expression of five fields (minute hour day month weekday)")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None


def is_loopback_url(url: str) -> bool:
    from jumpcloud.client import is_loopback_host  # httpx is heavy to import; only plain-http URLs need this

    return is_loopback_host(urlsplit(url).hostname or "")


class ProvisioningPolicy(BaseModel):
    """What a connector lets provisioning do. Destructive actions (user.delete, role.set) are off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_actions: tuple[str, ...] = DEFAULT_ALLOWED_ACTIONS
    dry_run: bool = False
    max_attempts: int = Field(default=5, ge=1, le=50)

    @field_validator("allowed_actions")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in ACTION_NAMES]
        if unknown:
            raise ValueError(f"unknown action(s) {', '.join(map(repr, unknown))}; known: {', '.join(ACTION_NAMES)}")
        return value


class ConnectorConfig(BaseModel):
    """One JumpCloud organisation and how to sync it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = None
    api_key_file: Path | None = None
    org_id: str | None = None
    interval: Duration | None = None
    cron: str | None = None
    resource_types: tuple[ResourceType, ...] = ALL_RESOURCE_TYPES
    max_in_flight: int = Field(default=8, ge=1, le=64)  # per sync part (each part has its own client)
    #: Fleet-wide limits for the connector's key, shared through Redis by every part on every worker.
    shared_max_in_flight: int | None = Field(default=None, ge=1, le=256)
    rate_limit: float | None = Field(default=None, gt=0, le=10000)  # requests per second
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base: float = Field(default=0.5, ge=0, le=60)
    ca_bundle: Path | None = None
    provisioning: ProvisioningPolicy = ProvisioningPolicy()
    #: The incremental refresh from Directory Insights events (pipeline.incremental, docs/incremental.md).
    events: bool = True
    events_interval: Duration = "1m"
    #: Where the events API is: by default the events host of ``base_url``'s region (api.jumpcloud.com for
    #: console.jumpcloud.com), or ``base_url`` itself for a loopback simulator or a proxy.
    events_base_url: str | None = None
    #: Events this much older than the cursor are read again, so that one that became visible late is caught.
    events_overlap: Duration = "2m"
    #: How long JumpCloud keeps events (90 days; 15 on the smallest plans): an older cursor asks for a full sync.
    events_retention: Duration = "90d"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a connector name (lowercase letters, digits, - and _; up to 63)")
        return value

    @field_validator("base_url", "events_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback_url(value):
            raise ValueError(f"{value!r}: plain http is only allowed for a loopback simulator; use https")
        return value.rstrip("/")

    @field_validator("org_id")
    @classmethod
    def _org_id(cls, value: str | None) -> str | None:
        if value is not None and not _ORG_ID.match(value):
            raise ValueError(f"{value!r} is not a JumpCloud organisation id (24 hex characters)")
        return value

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
    def _one_of_each(self) -> ConnectorConfig:
        if (self.api_key_env is None) == (self.api_key_file is None):
            raise ValueError("set exactly one of api_key_env and api_key_file")
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

    @property
    def events_url(self) -> str:
        """The base URL of the Directory Insights API for this connector."""
        from jumpcloud.events import events_base_url_for

        return self.events_base_url or events_base_url_for(self.base_url)

    @property
    def interval_seconds(self) -> float | None:
        return parse_duration(self.interval).total_seconds() if self.interval else None

    def api_key(self) -> str:
        """Read the API key from its env var or file. Errors name the source, never the key."""
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise ConfigError(f"connector {self.name!r}: environment variable {self.api_key_env} is not set")
            return key
        assert self.api_key_file is not None
        path = self.api_key_file
        try:
            mode = path.stat().st_mode
            key = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"connector {self.name!r}: api_key_file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"connector {self.name!r}: api_key_file {path} is readable by others; chmod 600 it")
        if not key:
            raise ConfigError(f"connector {self.name!r}: api_key_file {path} is empty")
        return key


class SyncSettings(BaseModel):
    """Limits of the sync pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part_time_limit: Duration = "1h"
    #: How long the broker waits for a task's acknowledgement before giving its message to another worker:
    #: the recovery time when a whole worker host dies. Must exceed the longest task (part_time_limit + 60s).
    visibility_timeout: Duration = "1h10m"
    stale_run_after: Duration = "2h"
    config_reload_interval: Duration = "30s"
    #: The deletion safety valve: a part that would mark more than this share of its live rows deleted holds
    #: the deletion until approved (`jumpsync deletions approve`); fewer than delete_hold_min rows always pass.
    max_delete_share: float = Field(default=0.2, ge=0, le=1)
    delete_hold_min: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _visibility_covers_tasks(self) -> SyncSettings:
        hard_limit = parse_duration(self.part_time_limit) + timedelta(seconds=60)
        if parse_duration(self.visibility_timeout) <= hard_limit:
            raise ValueError(f"visibility_timeout ({self.visibility_timeout}) must be longer than part_time_limit "
                             f"+ 60s ({self.part_time_limit} + 60s), or running tasks would be delivered twice")
        if parse_duration(self.stale_run_after) <= parse_duration(self.visibility_timeout):
            raise ValueError(f"stale_run_after ({self.stale_run_after}) must be longer than visibility_timeout "
                             f"({self.visibility_timeout}), so a redelivered part can start before the run is failed")
        return self


class ProvisioningSettings(BaseModel):
    """How the provisioning queue recovers lost work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relay_after: Duration = "60s"     # a request pending (not picked up) this long is enqueued again
    lease: Duration = "15m"           # a request running this long without finishing is taken over
    relay_interval: Duration = "30s"  # how often beat runs the relay


class HistorySettings(BaseModel):
    """How long the change history is kept (pruned daily by beat)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention: Duration = "90d"


class AccessSettings(BaseModel):
    """The stored renderings of the access report and export (docs/access.md): the worker renders them after
    each sync and, every ``refresh_interval``, for connectors whose data provisioning changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshots: bool = True
    refresh_interval: Duration = "1m"


class FileConfig(BaseModel):
    """The shape of ``jumpsync.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str | None = None
    broker_url: str | None = None
    sync: SyncSettings = SyncSettings()
    provisioning: ProvisioningSettings = ProvisioningSettings()
    history: HistorySettings = HistorySettings()
    access: AccessSettings = AccessSettings()
    connectors: tuple[ConnectorConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> FileConfig:
        seen: set[str] = set()
        for index, connector in enumerate(self.connectors):
            if connector.name in seen:
                raise ValueError(f"connectors[{index}].name: {connector.name!r} is used twice")
            seen.add(connector.name)
        return self

    def connector(self, name: str) -> ConnectorConfig:
        for connector in self.connectors:
            if connector.name == name:
                return connector
        known = ", ".join(c.name for c in self.connectors) or "none"
        raise ConfigError(f"unknown connector {name!r} (configured: {known})")


def check_api_keys(settings: Settings) -> None:
    """Raise one ConfigError listing every connector whose key cannot be read (never the keys themselves).

    Workers call this at start-up, so a missing secret is found when the service starts, not at 3 a.m. in
    the middle of a sync.
    """
    problems = []
    for connector in settings.connectors:
        try:
            connector.api_key()
        except ConfigError as exc:
            problems.append(f"{settings.config_path}: connectors[{settings.connectors.index(connector)}] {exc}")
    if problems:
        raise ConfigError("\n".join(problems))


class EnvSettings(BaseSettings):
    """What the environment says; it wins over the file."""

    model_config = SettingsConfigDict(env_prefix="JUMPSYNC_", extra="ignore")

    config: Path | None = None
    database_url: str | None = None
    broker_url: str | None = None


class Settings(BaseModel):
    """The resolved settings a process runs with."""

    model_config = ConfigDict(frozen=True)

    config_path: Path
    database_url: str
    broker_url: str
    file: FileConfig

    @property
    def connectors(self) -> tuple[ConnectorConfig, ...]:
        return self.file.connectors


def _format_location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_file_config(path: Path, *, required: bool) -> FileConfig:
    """Read and validate one config file; a missing optional file is an empty config."""
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: config file not found")
        return FileConfig()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _format_location(tuple(p for p in error["loc"] if not str(p).startswith("function-")))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{path}: {where}: {message}")
        raise ConfigError("\n".join(problems)) from None


def load_settings(config_path: Path | str | None = None) -> Settings:
    """Resolve settings from the explicit path, the environment and the file."""
    env = EnvSettings()
    explicit = config_path if config_path is not None else env.config
    path = Path(explicit) if explicit is not None else DEFAULT_CONFIG_PATH
    file = load_file_config(path, required=explicit is not None)
    return Settings(
        config_path=path,
        database_url=env.database_url or file.database_url or DEFAULT_DATABASE_URL,
        broker_url=env.broker_url or file.broker_url or DEFAULT_BROKER_URL,
        file=file,
    )


class SettingsCache:
    """Settings that re-read the config file when it changes, so workers see new connectors without a restart."""

    def __init__(self, config_path: Path | str | None = None) -> None:
        self._config_path = config_path
        self._stamp: tuple | None = None
        self._settings: Settings | None = None

    def _file_stamp(self, path: Path) -> tuple:
        try:
            st = path.stat()
        except FileNotFoundError:
            return ("missing",)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._config_path)
            self._stamp = self._file_stamp(self._settings.config_path)
            return self._settings
        stamp = self._file_stamp(self._settings.config_path)
        if stamp != self._stamp:
            self._settings = load_settings(self._config_path)
            self._stamp = stamp
        return self._settings
