"""Per-process state of a jumpsync process: the settings (re-read when the config file changes, with the
connectors that ``[[msp]]`` discovery keeps in the database) and the database engine (built lazily, so each
forked worker child opens its own connections)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from models.db import get_engine
from models.migrate import SchemaOutOfDate, check
from config.settings import ConfigError, Settings, SettingsCache

log = logging.getLogger(__name__)

#: How long a process uses the discovered connectors it read before reading them again: a new organisation
#: reaches every process within this (beat, which schedules it, re-reads every ``config_reload_interval``).
DISCOVERED_TTL = 5.0

_settings = SettingsCache()
_schema_ready: set[str] = set()


class _DiscoveredView:
    """The last settings merged with the discovered connectors, and when they were read."""

    base: Settings | None = None
    merged: Settings | None = None
    read_at = float("-inf")


_view = _DiscoveredView()


def settings() -> Settings:
    """The settings: the config file's, plus the connectors its ``[[msp]]`` tables discovered."""
    base = _settings.get()
    if not base.file.msp:
        return base
    if _view.base is base and _view.merged is not None and time.monotonic() - _view.read_at < DISCOVERED_TTL:
        return _view.merged
    return _read_discovered(base)


def settings_for(connector: str) -> Settings:
    """The settings, read again first when they do not know ``connector``: a task for an organisation
    discovered a moment ago may reach this process before its cached view has it."""
    current = settings()
    try:
        current.connector(connector)
    except ConfigError:
        if current.file.msp:
            return _read_discovered(_settings.get())
    return current


def _read_discovered(base: Settings) -> Settings:
    """Merge the discovered connectors into ``base``. When the database cannot say (down, or not migrated yet:
    ``jumpsync db upgrade`` runs with these settings), the connectors read last time are kept: a blip must not
    make beat drop every discovered organisation's schedule."""
    from pipeline.discovery import discovered_connectors  # only processes of a config with [[msp]] need it

    try:
        merged = base.with_discovered(discovered_connectors(engine(), base.file))
    except (SQLAlchemyError, SchemaOutOfDate) as exc:  # SchemaOutOfDate: `jumpsync db upgrade` is about to run
        log.log(logging.DEBUG if isinstance(exc, SchemaOutOfDate) else logging.WARNING,
                "discovered connectors not readable, keeping the last known: %s", type(exc).__name__)
        merged = base.with_discovered(list(_view.merged.discovered) if _view.merged is not None else [])
    _view.base, _view.merged, _view.read_at = base, merged, time.monotonic()
    return merged


def engine() -> Engine:
    """The engine for the configured database; the first use checks the schema is migrated (SchemaOutOfDate
    tells the operator to run ``jumpsync db upgrade``)."""
    url = _settings.get().database_url
    db = get_engine(url)
    if url not in _schema_ready:
        check(db)
        _schema_ready.add(url)
    return db
