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

import tomllib
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.connector import ALL_RESOURCE_TYPES, ConnectorConfig, ProvisioningPolicy  # noqa: F401  (re-exported)
from config.msp import MspConfig
from config.names import match_name, suggest
from config.values import ConfigError, Duration, parse_duration

DEFAULT_DATABASE_URL = "sqlite:///./jumpsync.db"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CONFIG_PATH = Path("jumpsync.toml")


class SyncSettings(BaseModel):
    """Limits of the sync pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part_time_limit: Duration = "1h"
    #: How long the broker waits for a task's acknowledgement before giving its message to another worker:
    #: the recovery time when a whole worker host dies. Must exceed the longest task (part_time_limit + 60s).
    visibility_timeout: Duration = "1h10m"
    stale_run_after: Duration = "2h"
    config_reload_interval: Duration = "30s"
    #: How often a running fetch part saves the pages it wrote (pipeline.checkpoint): what an attempt taking it
    #: over lists again is at most this much of the listing.
    checkpoint_interval: Duration = "10s"
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
    each sync and, every ``refresh_interval``, for connectors whose data changed since. A change outside a full
    sync (an incremental refresh, provisioning) is rendered at most once every ``render_interval``: a stored
    rendering is then at most ``render_interval`` + ``refresh_interval`` behind (reads compute live meanwhile)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshots: bool = True
    refresh_interval: Duration = "1m"
    render_interval: Duration = "5m"


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
    msp: tuple[MspConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> FileConfig:
        tables: tuple[tuple[str, Sequence[ConnectorConfig | MspConfig]], ...] = (
            ("connectors", self.connectors), ("msp", self.msp))
        for table, entries in tables:
            seen: set[str] = set()
            for index, entry in enumerate(entries):
                if entry.name in seen:
                    raise ValueError(f"{table}[{index}].name: {entry.name!r} is used twice")
                seen.add(entry.name)
        return self

    def msp_table(self, name: str) -> MspConfig:
        return _named(self.msp, name, "msp")


def _named(entries: tuple, name: str, what: str):
    """The entry that ``name`` names (``config.names.match_name``: ``ACME`` is ``acme``); a ConfigError with the
    closest and the configured ones otherwise."""
    names = [entry.name for entry in entries]
    found = match_name(name, names)
    if found is not None:
        return entries[names.index(found)]
    raise ConfigError(f"unknown {what} {name!r}{suggest(name, names)} (configured: {', '.join(names) or 'none'})")


def check_api_keys(settings: Settings) -> None:
    """Raise one ConfigError listing every connector and MSP table whose key cannot be read (never the keys).

    Workers call this at start-up, so a missing secret is found when the service starts, not at 3 a.m. in
    the middle of a sync.
    """
    problems = []
    tables: tuple[tuple[str, Sequence[ConnectorConfig | MspConfig]], ...] = (
        ("connectors", settings.file.connectors), ("msp", settings.file.msp))
    for table, entries in tables:
        for index, entry in enumerate(entries):
            try:
                entry.api_key()
            except ConfigError as exc:
                problems.append(f"{settings.config_path}: {table}[{index}] {exc}")
    if problems:
        raise ConfigError("\n".join(problems))


class EnvSettings(BaseSettings):
    """What the environment says; it wins over the file."""

    model_config = SettingsConfigDict(env_prefix="JUMPSYNC_", extra="ignore")

    config: Path | None = None
    database_url: str | None = None
    broker_url: str | None = None


class Settings(BaseModel):
    """The resolved settings a process runs with: the file's, and the connectors of the organisations that its
    ``[[msp]]`` tables discovered (``with_discovered``; the worker's runtime reads them from the database)."""

    model_config = ConfigDict(frozen=True)

    config_path: Path
    database_url: str
    broker_url: str
    file: FileConfig
    discovered: tuple[ConnectorConfig, ...] = ()

    @property
    def connectors(self) -> tuple[ConnectorConfig, ...]:
        """Every connector: those of ``[[connectors]]``, then the discovered ones."""
        return self.file.connectors + self.discovered

    def connector(self, name: str) -> ConnectorConfig:
        return _named(self.connectors, name, "connector")

    #: False when the discovered connectors could not be read and none were known: beat then removes no entry.
    discovered_known: bool = True

    def with_discovered(self, connectors: list[ConnectorConfig], *, known: bool = True) -> Settings:
        """These settings plus the discovered connectors that run (``split_discovered``)."""
        kept, _ = split_discovered(self.file, connectors)
        return self.model_copy(update={"discovered": tuple(kept), "discovered_known": known})


def split_discovered(file: FileConfig, connectors: list[ConnectorConfig]) -> tuple[list[ConnectorConfig],
                                                                                   dict[str, str]]:
    """The discovered connectors that run, and those that do not with the reason (``shadowed``). A
    ``[[connectors]]`` entry wins over a discovered organisation it names (same ``base_url`` and ``org_id``: the
    file says how to sync it) and over a discovered connector of its name; an organisation two ``[[msp]]``
    tables reach runs once, under the first table's connector (``connectors`` come in table order)."""
    names = {c.name for c in file.connectors}
    orgs: dict[tuple[str, str | None], str] = {
        (c.base_url, c.org_id): f"connector {c.name!r} of [[connectors]]" for c in file.connectors if c.org_id}
    kept: list[ConnectorConfig] = []
    shadowed: dict[str, str] = {}
    for connector in connectors:
        key = (connector.base_url, connector.org_id)
        if connector.name in names:
            shadowed[connector.name] = f"[[connectors]] has a connector named {connector.name!r}"
        elif key in orgs:
            shadowed[connector.name] = f"the organisation is synced by {orgs[key]}"
        else:
            kept.append(connector)
            orgs[key] = f"connector {connector.name!r} of msp {connector.msp!r}"
    return kept, shadowed


def _format_location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def decode_utf8(raw: bytes, path: Path) -> str:
    """A file's text; ConfigError naming the line, the column and the byte where it is not UTF-8 (TOML is UTF-8:
    a file saved as Latin-1 by an editor would otherwise fail every command with a traceback)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}: not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}, column {column} "
                          "(TOML files are UTF-8: save it as UTF-8)") from None


def load_file_config(path: Path, *, required: bool) -> FileConfig:
    """Read and validate one config file; a missing optional file is an empty config."""
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: config file not found")
        return FileConfig()
    try:
        data = tomllib.loads(decode_utf8(path.read_bytes(), path))
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


#: Called once, when this process first resolves its settings (``when_first_loaded``).
_first_load: list[Callable[[], None]] = []


def when_first_loaded(callback: Callable[[], None]) -> None:
    """Call ``callback`` the first time this process resolves its settings: a notice about where they came from
    (the command line's note that it took them from a running ``jumpsync up``) is then given only when a command
    uses them, not for ``--help`` nor a command line refused before."""
    _first_load.append(callback)


def load_settings(config_path: Path | str | None = None) -> Settings:
    """Resolve settings from the explicit path, the environment and the file."""
    while _first_load:
        _first_load.pop(0)()
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
