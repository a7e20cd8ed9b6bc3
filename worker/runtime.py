"""Per-process state of a jumpsync process: the settings (re-read when the config file changes, with the
connectors that ``[[msp]]`` discovery keeps in the database) and the database engine (built lazily, so each
forked worker child opens its own connections)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine

from config.settings import ConfigError, Settings, SettingsCache, split_discovered
from models.db import get_engine
from models.migrate import SchemaOutOfDate, check

log = logging.getLogger(__name__)

#: How long a process uses the discovered connectors it read before reading them again: a new organisation
#: reaches every process within this (beat reads them afresh whenever it reconciles its schedule).
DISCOVERED_TTL = 5.0

_settings = SettingsCache()
_schema_ready: set[str] = set()


class _DiscoveredView:
    """The last settings merged with the discovered connectors, and when they were read."""

    base: Settings | None = None
    merged: Settings | None = None
    read_at = float("-inf")
    shadowed: set[str] = set()


_view = _DiscoveredView()


def settings(*, fresh: bool = False) -> Settings:
    """The settings: the config file's, plus the connectors its ``[[msp]]`` tables discovered (read again now
    with ``fresh``)."""
    base = _settings.get()
    if not base.file.msp:
        return base
    if (not fresh and _view.base is base and _view.merged is not None
            and time.monotonic() - _view.read_at < DISCOVERED_TTL):
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
    """Merge the discovered connectors into ``base``. When they cannot be read (the database is down or not
    migrated yet: ``jumpsync db upgrade`` runs with these settings), those read last time are kept, as far as
    the file still has their tables; a process that never read them says so (``discovered_known``), and beat
    then removes no schedule: a blip must not drop every discovered organisation's syncs."""
    from msp.views import discovered_connectors  # only processes of a config with [[msp]] need it

    try:
        found, known = discovered_connectors(engine(), base.file), True
    except Exception as exc:  # noqa: BLE001  (SchemaOutOfDate: `jumpsync db upgrade` is about to run)
        log.log(logging.DEBUG if isinstance(exc, SchemaOutOfDate) else logging.WARNING,
                "discovered connectors not readable, keeping the last known: %s", type(exc).__name__)
        found, known = _last_known(base), _view.merged is not None and _view.merged.discovered_known
    merged = base.with_discovered(found, known=known)
    _warn_shadowed(base, found)
    _view.base, _view.merged, _view.read_at = base, merged, time.monotonic()
    return merged


def _last_known(base: Settings) -> list:
    """The discovered connectors read last, rebuilt with the tables of ``base`` (a table removed since: none)."""
    tables = {msp.name: msp for msp in base.file.msp}
    previous = _view.merged.discovered if _view.merged is not None else ()
    return [tables[c.msp].connector_for(c.name, c.org_id) for c in previous if c.msp in tables]


def _warn_shadowed(base: Settings, found: list) -> None:
    """Say once, when it happens, that a discovered organisation is not run because another connector has it."""
    _, shadowed = split_discovered(base.file, found)
    for name, why in shadowed.items():
        if name not in _view.shadowed:
            log.warning("discovered connector %s not run: %s", name, why)
    _view.shadowed = set(shadowed)


def engine() -> Engine:
    """The engine for the configured database; the first use checks the schema is migrated (SchemaOutOfDate
    tells the operator to run ``jumpsync db upgrade``)."""
    url = _settings.get().database_url
    db = get_engine(url)
    if url not in _schema_ready:
        check(db)
        _schema_ready.add(url)
    return db
