"""Access insight tasks: thin wrappers that call ``access.snapshots``. Arguments are connector names."""

from __future__ import annotations

from dataclasses import asdict

import redis
from celery import shared_task

from access import snapshots as access_snapshots
from config.settings import parse_duration
from worker import runtime
from worker.names import TaskName


@shared_task(name=TaskName.ACCESS_REFRESH)
def access_refresh(connector: str | None = None) -> dict:
    """Render the stored report and export of one connector, or of every configured one, whose data changed
    since they were last rendered (none when ``[access] snapshots`` is off)."""
    settings = runtime.settings()
    if not settings.file.access.snapshots:
        return {"refreshed": [], "reason": "[access] snapshots is off"}
    names = [connector] if connector else [c.name for c in settings.connectors]
    client = redis.Redis.from_url(settings.broker_url)
    try:
        interval = parse_duration(settings.file.access.render_interval)
        return {"refreshed": [asdict(done) for done in access_snapshots.refresh_connectors(
            runtime.engine(), names, client, render_interval=interval)]}
    finally:
        client.close()
