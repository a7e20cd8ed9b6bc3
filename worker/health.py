"""``jumpsync health``: can this deployment work? Broker reachable, database reachable and migrated, workers
answering. For probes and for people; each check says what is wrong, never a secret (an error's text may quote a
URL: its password is hidden, config.redact)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from config.redact import redact
from config.words import plural


def check_broker(app) -> dict[str, Any]:
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=3)
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001  (any failure to connect is the answer)
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}


def check_database(url: str) -> dict[str, Any]:
    from models.db import get_engine
    from models.migrate import SchemaOutOfDate, check

    try:
        engine = get_engine(url)
        check(engine)  # first: it connects only to a database that exists (a probe creates no SQLite file)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"ok": True}
    except SchemaOutOfDate as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")}


def check_workers(app, *, worker: str | None, min_workers: int, timeout: float = 3.0) -> dict[str, Any]:
    if worker is None and min_workers <= 0:
        return {"ok": True, "skipped": "no worker check asked for"}
    try:
        replies = app.control.ping(destination=[worker] if worker else None, timeout=timeout) or []
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
    names = sorted(name for reply in replies for name in reply)
    if worker and worker not in names:
        return {"ok": False, "error": f"worker {worker} did not answer a ping within {timeout:.0f}s", "workers": names}
    if len(names) < min_workers:
        return {"ok": False, "error": f"{plural(len(names), 'worker')} answered, {min_workers} needed", "workers": names}
    return {"ok": True, "workers": names}


def run_checks(app, database_url: str, *, worker: str | None = None, min_workers: int = 0) -> dict[str, Any]:
    broker = check_broker(app)
    checks: dict[str, Any] = {"broker": broker, "database": check_database(database_url)}
    checks["workers"] = (check_workers(app, worker=worker, min_workers=min_workers) if broker["ok"]
                         else {"ok": False, "error": "broker unreachable"})
    checks["ok"] = all(c["ok"] for c in checks.values() if isinstance(c, dict))
    return checks
