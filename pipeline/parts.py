"""Running one fetch part of a sync: one resource type from the API, streamed into the database (the derived parts
are in ``pipeline.derived``). Plain functions of an engine and a connector config: no Celery here.

A part that fails deletes nothing: deletion happens only after the whole listing of its type came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from config.settings import ConnectorConfig, SyncSettings
from config.values import parse_duration
from connector import FETCH_SYNCERS
from connector.client_factory import ClientFactory, describe_error, make_client
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import ClientStats
from jumpcloud.paging import Page
from models.states import PartStatus
from models.store import GrantWriter, ResourceWriter
from models.tables import utcnow
from pipeline import checkpoint
from pipeline.claims import PartLease, claim_part, end_part
from pipeline.streaming import FetchWindow, WriteBehind
from pipeline.valve import Deletion, hold_reason, use_approval
from telemetry import metrics

log = logging.getLogger(__name__)

#: Grants are written this many resources (scopes) at a time; resources about this many records at a time.
GRANT_BATCH_SCOPES = 100
RESOURCE_BATCH = 1000
#: Per-resource grant listings kept running at once, per request slot of the connector's client: enough that
#: the slots stay busy while the next page of resources is listed and while a batch is handed to the writer.
GRANT_WINDOW_PER_SLOT = 4

@dataclass(frozen=True)
class PartResult:
    ran: bool
    status: PartStatus | None = None
    reason: str | None = None


@dataclass
class _Part:
    """One attempt at a fetch part: where it writes and where it saves its checkpoint."""

    engine: Engine
    run_id: int
    resource_type: str
    attempt: int
    resources: ResourceWriter
    grants: GrantWriter | None
    resume: checkpoint.Checkpoint | None = None

    def counts(self) -> dict[str, int]:
        """The part's counts: its writers', with those of the attempts it went on from, and how many pages it
        did not list again (``pages_resumed``)."""
        counts = self.resources.counts + (self.grants.counts if self.grants else Counter())
        if self.resume is not None:
            counts["pages_resumed"] = len(self.resume.done)
        return dict(counts)

    def save(self, done: tuple[int, ...], total: int, page_size: int) -> None:
        """Save the checkpoint: on the writer thread, after the writes of the pages it names."""
        saved = checkpoint.Checkpoint(
            attempt=self.attempt, page_size=page_size, total=total, done=done,
            resources=self.resources.state(), grants=self.grants.state() if self.grants else None)
        if not checkpoint.save(self.engine, self.run_id, self.resource_type, saved):
            log.info("checkpoint not saved: the part was handed over", extra={
                "run_id": self.run_id, "part": self.resource_type, "attempt": self.attempt})


class _Batches:
    """What waits between the listing and the writer thread: records for a resource batch, grant scopes for a
    grant batch, and the ledger of the pages they came from (a page is done once all of it went to the writer)."""

    def __init__(self, part: _Part, writes: WriteBehind, checkpointer: checkpoint.Checkpointer,
                 page_size: int) -> None:
        self.part, self.writes, self.checkpointer, self.page_size = part, writes, checkpointer, page_size
        self.ledger = checkpoint.PageLedger(with_grants=part.grants is not None)
        self.records: list[ResourceRecord] = []
        self.record_pages: list[int] = []  # the pages whose records wait in ``records``
        self.scopes: dict[str, list[GrantRecord]] = {}
        self.scope_pages: list[int] = []  # the page of each scope waiting in ``scopes``

    async def add_page(self, page: Page[ResourceRecord]) -> None:
        self.ledger.listed(page)
        self.records.extend(page)
        self.record_pages.append(page.skip)
        if len(self.records) >= RESOURCE_BATCH:
            await self.write_records()
        await self.checkpoint_if_due()

    async def add_scopes(self, results: list[tuple[int, str, list[GrantRecord]]]) -> None:
        for skip, resource_id, grants in results:
            self.scopes[resource_id] = grants
            self.scope_pages.append(skip)
        if len(self.scopes) >= GRANT_BATCH_SCOPES:
            await self.write_scopes()
        await self.checkpoint_if_due()

    async def write_records(self) -> None:
        if self.records:
            await self.writes.submit(self.part.resources.write, self.records)
        for skip in self.record_pages:
            self.ledger.handed(skip)
        self.records, self.record_pages = [], []

    async def write_scopes(self) -> None:
        if self.part.grants is not None and self.scopes:
            await self.writes.submit(self.part.grants.write_scopes, self.scopes)
        for skip in self.scope_pages:
            self.ledger.handed(skip)
        self.scopes, self.scope_pages = {}, []

    async def checkpoint_if_due(self) -> None:
        """Every ``checkpointer.interval``: what waits goes to the writer and, if a page more is done, the
        checkpoint after it."""
        if not self.checkpointer.due():
            return
        await self.write_records()
        await self.write_scopes()
        if self.checkpointer.news(self.ledger):
            await self.writes.submit(self.part.save, tuple(sorted(self.ledger.done)), self.ledger.total or 0,
                                     self.page_size)
        self.checkpointer.saved(self.ledger)


async def _fetch(connector: ConnectorConfig, part: _Part, client_factory: ClientFactory, stats: list[ClientStats],
                 checkpoint_every: float) -> int:
    """Stream the listing into the writers; returns the number of HTTP requests made. ``stats`` receives the
    client's stats, so that a failed part still reports what it sent.

    Resources are written in batches of about ``RESOURCE_BATCH`` records and grants ``GRANT_BATCH_SCOPES``
    resources at a time, on the writer thread (``WriteBehind``), while the grant listings of every resource run
    in one window of ``GRANT_WINDOW_PER_SLOT × max_in_flight`` across pages, so the client's slots stay full.
    Every ``checkpoint_every`` seconds what waits goes to the writer and, after it, the checkpoint
    (``pipeline.checkpoint``); a part resumed from one lists only the pages it does not name.
    """
    client = client_factory(connector)
    stats.append(client.stats)
    syncer = FETCH_SYNCERS[part.resource_type](client)
    window_size = GRANT_WINDOW_PER_SLOT * max(1, connector.max_in_flight)

    async def scope(listed: tuple[int, ResourceRecord]) -> tuple[int, str, list[GrantRecord]]:
        skip, resource = listed
        return skip, resource.id, await syncer.grants(resource)

    async with client, WriteBehind() as writes, FetchWindow(scope, window_size) as window:
        batches = _Batches(part, writes, checkpoint.Checkpointer(checkpoint_every), client.page_size)
        async for page in syncer.resources(part.resume.resume() if part.resume else None):
            await batches.add_page(page)
            if part.grants is not None:
                for resource in page:
                    await batches.add_scopes(await window.add((page.skip, resource)))
        await batches.write_records()
        if part.grants is not None:
            async for results in window.draining():
                await batches.add_scopes(results)
            await batches.write_scopes()
        await writes.drain()
    return client.stats.requests


def run_fetch_part(engine: Engine, connector: ConnectorConfig, run_id: int, resource_type: str,
                   client_factory: ClientFactory = make_client, limits: SyncSettings | None = None, *,
                   checkpoint_every: timedelta | None = None) -> PartResult:
    """Claim and run one fetch part; once the whole listing came back, mark what was not seen as deleted,
    unless that is so much that the deletion safety valve holds it. An attempt that takes the part over goes on
    from the last checkpoint of the one before (``pipeline.checkpoint``), saved every ``checkpoint_every``
    (default: ``limits.checkpoint_interval``, whose 10 s minimum a test may go below)."""
    claim = claim_part(engine, run_id, resource_type)
    if claim.attempt is None or claim.connector_id is None:
        return PartResult(ran=False, reason=claim.reason)
    now = utcnow()
    resources = ResourceWriter(engine, claim.connector_id, resource_type, now, run_id)
    source = FETCH_SYNCERS[resource_type].grant_source
    grants = GrantWriter(engine, claim.connector_id, resource_type, source, now, run_id) if source else None
    part = _Part(engine, run_id, resource_type, claim.attempt, resources, grants,
                 resume=checkpoint.load(engine, run_id, resource_type))
    if part.resume is not None:
        resources.restore(part.resume.resources)
        if grants is not None and part.resume.grants is not None:
            grants.restore(part.resume.grants)
        log.info("sync part resumed from its checkpoint", extra={
            "connector": connector.name, "run_id": run_id, "part": resource_type, "attempt": claim.attempt,
            "pages_done": len(part.resume.done)})
    with PartLease(engine, run_id, resource_type, claim.attempt):
        limits = limits or SyncSettings()
        every = parse_duration(limits.checkpoint_interval) if checkpoint_every is None else checkpoint_every
        return _run_claimed(connector, part, claim.connector_id, client_factory, limits, every.total_seconds())


def _run_claimed(connector: ConnectorConfig, part: _Part, connector_id: int, client_factory: ClientFactory,
                 limits: SyncSettings, checkpoint_every: float) -> PartResult:
    """The claimed part's work, under its lease: the listing, then the deletions, then its end recorded."""
    engine, run_id, resource_type, attempt = part.engine, part.run_id, part.resource_type, part.attempt
    resources, grants = part.resources, part.grants
    requests, clock = 0, metrics.Stopwatch()
    stats: list[ClientStats] = []
    try:
        requests = asyncio.run(_fetch(connector, part, client_factory, stats, checkpoint_every))
        held = None
        inconsistent = stats[0].inconsistent_pages
        if inconsistent:
            # The data changed while it was listed (or a total was wrong): what was seen is written, but an
            # absence proves nothing. The next sync, with a clean listing, deletes what is really gone.
            resources.note_inconsistent_listing(inconsistent)
            log.warning("listing changed while it was read; deletions deferred to the next sync",
                        extra={"connector": connector.name, "run_id": run_id, "part": resource_type,
                               "inconsistent_pages": inconsistent})
        else:
            held = _hold_reason(engine, connector_id, run_id, resource_type, resources, grants, limits)
            if held is None:
                resources.delete_unseen()
                if grants is not None:
                    grants.apply_deletions()
    except Exception as exc:  # noqa: BLE001  (any failure fails the part; nothing of its type is deleted)
        log.warning("sync part failed", extra={"connector": connector.name, "run_id": run_id,
                                               "part": resource_type, "error": describe_error(exc)})
        requests = stats[0].requests if stats else 0
        end_part(engine, run_id, resource_type, attempt, status=PartStatus.FAILED, counts=part.counts(),
                 requests=requests, error=f"connector {connector.name!r}: {describe_error(exc)}")
        _observe(connector.name, resource_type, PartStatus.FAILED, clock, stats)
        return PartResult(ran=True, status=PartStatus.FAILED, reason=describe_error(exc))
    status = PartStatus.SUCCEEDED if held is None else PartStatus.HELD
    error = None if status == PartStatus.SUCCEEDED else (
        f"deletion held: {held}; nothing of this type was deleted. If JumpCloud really lost them, run "
        f"`jumpsync deletions approve {connector.name} --type {resource_type}` and sync again")
    end_part(engine, run_id, resource_type, attempt, status=status, counts=part.counts(), requests=requests,
             error=error)
    _observe(connector.name, resource_type, status, clock, stats)
    if held is not None:
        log.warning("sync part held its deletions", extra={"connector": connector.name, "run_id": run_id,
                                                           "part": resource_type, "reason": held})
    return PartResult(ran=True, status=status, reason=held)


def _hold_reason(engine: Engine, connector_id: int, run_id: int, resource_type: str, resources: ResourceWriter,
                 grants: GrantWriter | None, limits: SyncSettings) -> str | None:
    """Why this part's deletions must wait for an operator (pipeline.valve), or None."""
    deletions = [Deletion(f"{resource_type} resources", len(resources.unseen()), resources.live_count())]
    if grants is not None:
        grants.plan_unseen_scopes()
        deletions.append(Deletion(f"{grants.source} grants", len(set(grants.doomed)), grants.live_count()))
    reason = hold_reason(deletions, max_share=limits.max_delete_share, min_count=limits.delete_hold_min)
    if reason is not None and use_approval(engine, connector_id, resource_type, run_id):
        log.warning("mass deletion approved by an operator", extra={"run_id": run_id, "part": resource_type,
                                                                    "reason": reason})
        return None
    return reason


def _observe(connector: str, part: str, status: PartStatus, clock: metrics.Stopwatch, stats: list[ClientStats]) -> None:
    metrics.observe_part(connector, part, status, clock.seconds)
    if stats:
        metrics.count_retries(connector, stats[0].retries)
