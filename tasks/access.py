"""Access insight tasks: thin wrappers that call ``worker.access_snapshots``. Arguments are connector names."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from worker import access_snapshots, runtime


@shared_task(name="jumpsync.access.refresh")
def access_refresh(connector: str | None = None) -> dict:
    """Render the stored report and export of one connector, or of every configured one, whose data changed
    since they were last rendered."""
    names = [connector] if connector else [c.name for c in runtime.settings().connectors]
    return {"refreshed": [asdict(access_snapshots.refresh(runtime.engine(), name)) for name in names]}
