"""A connector's latest full sync run as a record, for tests that follow a sync from outside."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from models.queries import connector_id, last_full_run, run_record
from models.read_records import RunRecord


def latest_run(engine: Engine, connector: str, *, finished: bool = False) -> RunRecord | None:
    """The connector's latest full sync run (incremental runs and skips aside); with ``finished``, the latest
    that ended."""
    with Session(engine) as session:
        run = last_full_run(session, connector_id(session, connector), finished=finished)
        return run_record(session, run) if run else None
