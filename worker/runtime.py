"""Per-process state of a jumpsync process: the settings (re-read when the config file changes) and the
database engine (built lazily, so each forked worker child opens its own connections)."""

from __future__ import annotations

from sqlalchemy import Engine

from models.db import create_schema, get_engine
from worker.settings import Settings, SettingsCache

_settings = SettingsCache()
_schema_ready: set[str] = set()


def settings() -> Settings:
    return _settings.get()


def engine() -> Engine:
    """The engine for the configured database, with the schema created on first use."""
    url = settings().database_url
    db = get_engine(url)
    if url not in _schema_ready:
        create_schema(db)
        _schema_ready.add(url)
    return db
