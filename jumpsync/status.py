"""Every connector's status as ``jumpsync status --json`` prints it and the HTTP API serves it.

The database's part (``models.queries.status``) plus what it does not know: beat's next trigger (from Redis),
the stored access rendering, and the connector's configuration. One home, so that the command and the API
show the same document.
"""

from __future__ import annotations

from typing import Any

from access.snapshots import rendering_states
from models import queries
from models.read_records import ConnectorStatus
from worker import runtime


def connector_status() -> list[dict[str, Any]]:
    """One entry per connector, configured or seen in the database (docs/cli-json.md, ``status``)."""
    return [entry.to_json() | extra for entry, extra in connector_status_records()]


def connector_status_records() -> list[tuple[ConnectorStatus, dict[str, Any]]]:
    """Each connector's status as the database knows it, with what the database does not know (``next_sync_at``,
    ``access_rendering``, ``events``, ``msp``): the table of ``jumpsync status`` reads both apart."""
    connectors = {c.name: c for c in runtime.settings().connectors}
    engine = runtime.engine()
    data = queries.status(engine, list(connectors))
    names = [e.connector for e in data]
    renderings = rendering_states(engine, names)
    out = []
    for entry, next_at in zip(data, next_syncs(names), strict=True):
        configured = connectors.get(entry.connector)
        out.append((entry, {"next_sync_at": next_at,
                            "access_rendering": renderings[entry.connector],
                            "events": configured.events if configured is not None else False,
                            "msp": configured.msp if configured is not None else None}))
    return out


def next_syncs(names: list[str]) -> list[str | None]:
    """Next trigger per connector from beat's entries in Redis; None for all when Redis cannot be read."""
    try:
        from worker.beat import next_syncs as read_next_syncs
        from worker.celery_app import app as celery_app

        found = read_next_syncs(celery_app, names)
        return [found.get(name) for name in names]
    except Exception:  # noqa: BLE001  (status must work with the broker down)
        return [None] * len(names)
