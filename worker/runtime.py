"""Per-process state of a jumpsync process: the settings (re-read when the config file changes) and the
database engine (built lazily, so each forked worker child opens its own connections)."""

from __future__ import annotations

from sqlalchemy import Engine

from models.db import get_engine
from models.migrate import check
from config.settings import Settings, SettingsCache

_settings = SettingsCache()
_schema_ready: set[str] = set()


def settings() -> Settings:
    return _settings.get()


def engine() -> Engine:
    """The engine for the configured database; the first use checks the schema is migrated (SchemaOutOfDate
    tells the operator to run ``jumpsync db upgrade``)."""
    url = settings().database_url
    db = get_engine(url)
    if url not in _schema_ready:
        check(db)
        _schema_ready.add(url)
    return db
