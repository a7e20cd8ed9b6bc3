"""A fetch part's checkpoint: the pages of its listing it has written completely, and what its writers knew then.

An attempt that takes a part over (its worker died and the lease ran out, its message was redelivered) starts
from the last checkpoint instead of page 0: it lists only the pages not written yet, and its writers go on from
what they had seen, so the part still deletes exactly what the whole listing did not show. At most one
``checkpoint_interval`` of pages is read twice.

A page is written completely once its resources and, in a part that lists grants, the grants of every one of its
resources have been handed to the writer thread. The checkpoint is handed to the same thread after them
(``streaming.WriteBehind`` runs writes in order), so it never names a page whose rows are not committed, and the
writers' state it saves covers exactly the writes before it. It is saved only while the attempt owns the part,
and cleared when the part ends (``claims.end_part``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import CursorResult, Engine, select, update
from sqlmodel import Session, col

from jumpcloud.paging import Page, Resume
from models.states import PartStatus
from models.store import WriterState
from models.tables import SyncPart

log = logging.getLogger(__name__)


class Checkpoint(BaseModel):
    """What a part's attempt had written when it saved: the listing's pages done (by skip, at ``page_size`` and
    ``total``), and its writers' states (``models.store.WriterState``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int
    page_size: int
    total: int
    done: tuple[int, ...]
    resources: WriterState
    grants: WriterState | None = None

    def resume(self) -> Resume:
        return Resume(page_size=self.page_size, total=self.total, done=frozenset(self.done))


def load(engine: Engine, run_id: int, name: str) -> Checkpoint | None:
    """The part's last checkpoint, or None (none saved, or one this version cannot read: the part then lists
    everything, as it would without one)."""
    with Session(engine) as session:
        saved = session.execute(select(col(SyncPart.checkpoint)).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.name) == name)).scalar_one_or_none()
    if not saved:
        return None
    try:
        return Checkpoint.model_validate(saved)
    except ValidationError as exc:
        log.warning("a sync part's checkpoint could not be read; the part lists everything again: %s", exc,
                    extra={"run_id": run_id, "part": name})
        return None


def save(engine: Engine, run_id: int, name: str, checkpoint: Checkpoint) -> bool:
    """Store the checkpoint if its attempt still owns the part (running, same attempt); False when it does not."""
    with Session(engine) as session:
        result = cast(CursorResult[Any], session.execute(update(SyncPart).where(
            col(SyncPart.run_id) == run_id, col(SyncPart.name) == name,
            col(SyncPart.attempt) == checkpoint.attempt, col(SyncPart.status) == PartStatus.RUNNING,
        ).values(checkpoint=checkpoint.model_dump(mode="json"))))
        session.commit()
        return result.rowcount == 1


@dataclass
class PageLedger:
    """Which listed pages still have rows not handed to the writer; used on the part's event loop only.

    A page owes one hand-over for its resources (they go to the writer in batches that may span pages) and, when
    the part lists grants, one per resource for that resource's grants; ``handed`` counts each as it goes.
    """

    with_grants: bool
    done: set[int] = field(default_factory=set)
    total: int | None = None
    _owed: dict[int, int] = field(default_factory=dict)

    def listed(self, page: Page[Any]) -> None:
        self.total = page.total
        self._owed[page.skip] = 1 + (len(page) if self.with_grants else 0)

    def handed(self, skip: int) -> None:
        """One of the page's hand-overs went to the writer."""
        left = self._owed[skip] - 1
        if left > 0:
            self._owed[skip] = left
        else:
            del self._owed[skip]
            self.done.add(skip)


@dataclass
class Checkpointer:
    """When a part saves: every ``interval`` seconds, if a page more is done since the last save."""

    interval: float
    _last: float = field(default_factory=time.monotonic)
    _saved_pages: int = 0

    def due(self) -> bool:
        """Time to hand what is buffered to the writer and see whether a page more is done."""
        return time.monotonic() - self._last >= self.interval

    def news(self, ledger: PageLedger) -> bool:
        return len(ledger.done) > self._saved_pages

    def saved(self, ledger: PageLedger) -> None:
        self._last, self._saved_pages = time.monotonic(), len(ledger.done)
