"""Comparing a database kept by incremental refreshes with one a full sync wrote, and the writes the tests make."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from models.tables import Grant, Resource


def live_state(engine) -> tuple[dict, set]:
    """Every live resource with what is stored of it, and every live grant (``via`` included)."""
    resources, grants = Resource.__table__, Grant.__table__
    with Session(engine) as session:
        rows = {(r.type, r.external_id): (r.name, r.email, r.status, r.profile, r.linked_user_id)
                for r in session.execute(select(resources).where(resources.c.deleted_at.is_(None)))}
        links = {(g.resource_type, g.resource_id, g.entitlement, g.principal_type, g.principal_id, g.via, g.source)
                 for g in session.execute(select(grants).where(grants.c.deleted_at.is_(None)))}
    return rows, links


def assert_same_state(incremental, full) -> None:
    """Resource for resource and grant for grant; on a difference, say which rows differ."""
    (rows_a, grants_a), (rows_b, grants_b) = live_state(incremental), live_state(full)
    assert set(rows_a) == set(rows_b), {"only incremental": set(rows_a) - set(rows_b),
                                        "only full": set(rows_b) - set(rows_a)}
    differing = {key: (rows_a[key], rows_b[key]) for key in rows_a if rows_a[key] != rows_b[key]}
    assert not differing, differing
    assert grants_a == grants_b, {"only incremental": grants_a - grants_b, "only full": grants_b - grants_a}


def scratch_sqlite(directory: Path, name: str):
    """An empty, migrated SQLite database for a full sync to compare with."""
    from models.db import make_engine
    from models.migrate import upgrade

    engine = make_engine(f"sqlite:///{directory / name}")
    upgrade(engine)
    return engine
