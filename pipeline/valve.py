"""The deletion safety valve: a part that would mark more than a share of its live rows deleted holds the
deletion instead, until an operator approves it.

It protects against a JumpCloud outage or a mis-scoped key that returns empty or partial lists with 200: a
sync must never read that as "everyone left". Small deletions (fewer than ``min_count`` rows) always pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, update
from sqlmodel import Session, col

from models.tables import DeletionApproval, utcnow

APPROVAL_VALID_FOR = timedelta(days=1)


@dataclass(frozen=True)
class Deletion:
    what: str      # "user resources", "group grants", ...
    deleting: int
    live: int


def hold_reason(deletions: list[Deletion], *, max_share: float, min_count: int) -> str | None:
    """Why the deletion must be held, or None when it may go ahead."""
    for deletion in deletions:
        if deletion.deleting >= min_count and deletion.live and deletion.deleting / deletion.live > max_share:
            return (f"would mark {deletion.deleting} of {deletion.live} live {deletion.what} deleted "
                    f"({deletion.deleting / deletion.live:.0%}, more than the {max_share:.0%} allowed)")
    return None


def use_approval(engine: Engine, connector_id: int, part: str, run_id: int) -> bool:
    """Consume a recent approval for this connector and part, if there is one."""
    with Session(engine) as session:
        result = cast(CursorResult[Any], session.execute(update(DeletionApproval).where(
            col(DeletionApproval.connector_id) == connector_id, col(DeletionApproval.part) == part,
            col(DeletionApproval.used_by_run_id).is_(None),
            col(DeletionApproval.created_at) > utcnow() - APPROVAL_VALID_FOR).values(used_by_run_id=run_id)))
        session.commit()
        return (result.rowcount or 0) > 0


def approve(engine: Engine, connector_id: int, part: str, approved_by: str | None) -> None:
    with Session(engine) as session:
        session.add(DeletionApproval(connector_id=connector_id, part=part, approved_by=approved_by))
        session.commit()
