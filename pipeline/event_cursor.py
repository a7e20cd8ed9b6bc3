"""Where a connector's incremental refresh stands (the ``event_cursors`` row), and the rules that move it.

- Every change before ``cursor`` is in the database. A full sync that succeeded reflects every change made
  before it started, so its start time is a cursor too: ``rebase`` moves the cursor up to it.
- A refresh reads the events in [cursor − overlap, now) and, once their changes are written, moves the cursor to
  that ``now`` (``advance``). The overlap catches events that became visible after the refresh that should have
  read them; ``seen`` (event id → epoch ms) keeps those of the window already applied, so they are not read back
  again.
- The cursor only moves forward: a refresh that ran late never takes it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, or_, update
from sqlmodel import Session

from models.bulk import dialect_insert
from models.tables import EventCursor, table_of, utcnow

_TABLE: Table = table_of(EventCursor)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class CursorState:
    connector_id: int
    cursor: datetime | None = None
    seen: dict[str, int] = field(default_factory=dict)
    full_sync_asked_at: datetime | None = None

    def rebase(self, full_sync_started: datetime, overlap: timedelta) -> bool:
        """Move the cursor up to a full sync's start; True if it moved."""
        if self.cursor is not None and self.cursor >= full_sync_started:
            return False
        self.cursor = full_sync_started
        self.seen = window(self.seen, full_sync_started, overlap)
        self.full_sync_asked_at = None
        return True


def window(seen: dict[str, int], cursor: datetime, overlap: timedelta) -> dict[str, int]:
    """The applied events that the next read, from ``cursor − overlap``, can return again."""
    floor = epoch_ms(cursor - overlap)
    return {event_id: ms for event_id, ms in seen.items() if ms >= floor}


def load(engine: Engine, connector_id: int) -> CursorState:
    """The connector's cursor, its row created (empty) the first time."""
    with Session(engine) as session:
        insert = dialect_insert(engine.dialect.name, _TABLE).values(connector_id=connector_id, seen={},
                                                                    requests=0, events=0, reads=0)
        session.execute(insert.on_conflict_do_nothing(index_elements=["connector_id"]))
        session.commit()
        row = session.get(EventCursor, connector_id)
        assert row is not None  # inserted above if it was missing
        return CursorState(connector_id, row.cursor, dict(row.seen or {}), row.full_sync_asked_at)


def record(engine: Engine, state: CursorState, outcome: str, *, reason: str | None = None,
           moved: bool = False, run_id: int | None = None, requests: int = 0, events: int = 0, reads: int = 0,
           lag_seconds: float | None = None, asked_full_sync: bool = False) -> None:
    """Save what a refresh did; with ``moved``, also the cursor and the window of applied events, unless a
    later refresh already moved the cursor further."""
    values = {"refreshed_at": utcnow(), "outcome": outcome, "reason": reason, "run_id": run_id,
              "requests": requests, "events": events, "reads": reads, "lag_seconds": lag_seconds}
    if asked_full_sync:
        values["full_sync_asked_at"] = state.full_sync_asked_at
    with Session(engine) as session:
        session.execute(update(_TABLE).where(_TABLE.c.connector_id == state.connector_id).values(**values))
        if moved:
            session.execute(update(_TABLE).where(
                _TABLE.c.connector_id == state.connector_id,
                or_(_TABLE.c.cursor.is_(None), _TABLE.c.cursor <= state.cursor)).values(
                cursor=state.cursor, seen=state.seen, full_sync_asked_at=state.full_sync_asked_at))
        session.commit()
