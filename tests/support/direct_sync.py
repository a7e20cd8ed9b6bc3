"""Driving a sync without a broker: the functions the Celery tasks call, in the order the tasks call them."""

from __future__ import annotations

from pathlib import Path

from config.settings import ConnectorConfig, FileConfig, Settings, SyncSettings
from pipeline import sync
from tests.support.constants import TEST_KEY_ENV

NAME = "acme"


def make_settings(db_url: str, base_url: str, sync_settings: SyncSettings = SyncSettings(), **connector) -> Settings:
    config = ConnectorConfig(**{"name": NAME, "base_url": base_url, "api_key_env": TEST_KEY_ENV, "max_attempts": 2,
                                "backoff_base": 0.01, **connector})
    return Settings(config_path=Path("test.toml"), database_url=db_url, broker_url="redis://unused",
                    file=FileConfig(connectors=(config,), sync=sync_settings))


def run_sync(settings: Settings, engine) -> sync.RunSummary:
    """What the tasks do, in order: begin, every part, finalize (enqueued by the part that ends the set)."""
    started = sync.begin(settings, engine, NAME, trigger="manual")
    assert not started.skipped, started.reason
    finalize_requests = [sync.run_part(settings, engine, started.run_id, part, NAME).finalize
                         for part in started.parts]
    assert finalize_requests[-1] and not any(finalize_requests[:-1])
    return sync.finalize(engine, started.run_id)
