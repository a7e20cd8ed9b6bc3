"""Running one fetch part of a sync: one resource type from the API, streamed into the database (the derived parts
are in ``pipeline.derived``). Plain functions of an engine and a connector config: no Celery here.

A part that fails deletes nothing: deletion happens only after the whole listing of its type came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine

from config.settings import ConnectorConfig, SyncSettings
from connector import FETCH_SYNCERS
from connector.client_factory import ClientFactory, describe_error, make_client
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import ClientStats
from models.states import PartStatus
from models.store import GrantWriter, ResourceWriter
from models.tables import utcnow
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


async def _fetch(connector: ConnectorConfig, resource_type: str, resources: ResourceWriter,
                 grants: GrantWriter | None, client_factory: ClientFactory, stats: list[ClientStats]) -> int:
    """Stream the listing into the writers; returns the number of HTTP requests made. ``stats`` receives the
    client's stats, so that a failed part still reports what it sent.

    Resources are written in batches of about ``RESOURCE_BATCH`` records and grants ``GRANT_BATCH_SCOPES``
    resources at a time, on the writer thread (``WriteBehind``), while the grant listings of every resource run
    in one window of ``GRANT_WINDOW_PER_SLOT × max_in_flight`` across pages, so the client's slots stay full.
    """
    client = client_factory(connector)
    stats.append(client.stats)
    syncer = FETCH_SYNCERS[resource_type](client)
    window_size = GRANT_WINDOW_PER_SLOT * max(1, connector.max_in_flight)

    async def scope(resource: ResourceRecord) -> tuple[str, list[GrantRecord]]:
        return resource.id, await syncer.grants(resource)

    async with client, WriteBehind() as writes, FetchWindow(scope, window_size) as window:
        records: list[ResourceRecord] = []
        scopes: dict[str, list[GrantRecord]] = {}

        async def take(results: list[tuple[str, list[GrantRecord]]], final: bool = False) -> None:
            nonlocal scopes
            scopes.update(results)
            if grants is not None and scopes and (final or len(scopes) >= GRANT_BATCH_SCOPES):
                await writes.submit(grants.write_scopes, scopes)
                scopes = {}

        async for page in syncer.resources():
            records.extend(page)
            if len(records) >= RESOURCE_BATCH:
                await writes.submit(resources.write, records)
                records = []
            if grants is None:
                continue
            for resource in page:
                await take(await window.add(resource))
        if records:
            await writes.submit(resources.write, records)
        if grants is not None:
            await take(await window.drain(), final=True)
        await writes.drain()
    return client.stats.requests


def run_fetch_part(engine: Engine, connector: ConnectorConfig, run_id: int, resource_type: str,
                   client_factory: ClientFactory = make_client, limits: SyncSettings | None = None) -> PartResult:
    """Claim and run one fetch part; once the whole listing came back, mark what was not seen as deleted,
    unless that is so much that the deletion safety valve holds it."""
    claim = claim_part(engine, run_id, resource_type)
    if claim.attempt is None or claim.connector_id is None:
        return PartResult(ran=False, reason=claim.reason)
    now = utcnow()
    resources = ResourceWriter(engine, claim.connector_id, resource_type, now, run_id)
    source = FETCH_SYNCERS[resource_type].grant_source
    grants = GrantWriter(engine, claim.connector_id, resource_type, source, now, run_id) if source else None
    with PartLease(engine, run_id, resource_type, claim.attempt):
        return _run_claimed(engine, connector, run_id, resource_type, claim.attempt, claim.connector_id,
                            (resources, grants), client_factory, limits)


def _run_claimed(engine: Engine, connector: ConnectorConfig, run_id: int, resource_type: str, attempt: int,
                 connector_id: int, writers: tuple[ResourceWriter, GrantWriter | None],
                 client_factory: ClientFactory, limits: SyncSettings | None) -> PartResult:
    """The claimed part's work, under its lease: the listing, then the deletions, then its end recorded."""
    resources, grants = writers
    requests, clock = 0, metrics.Stopwatch()
    stats: list[ClientStats] = []
    try:
        requests = asyncio.run(_fetch(connector, resource_type, resources, grants, client_factory, stats))
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
            held = _hold_reason(engine, connector_id, run_id, resource_type, resources, grants,
                                limits or SyncSettings())
            if held is None:
                resources.delete_unseen()
                if grants is not None:
                    grants.apply_deletions()
    except Exception as exc:  # noqa: BLE001  (any failure fails the part; nothing of its type is deleted)
        log.warning("sync part failed", extra={"connector": connector.name, "run_id": run_id,
                                               "part": resource_type, "error": describe_error(exc)})
        counts = dict(resources.counts + (grants.counts if grants else Counter()))
        requests = stats[0].requests if stats else 0
        end_part(engine, run_id, resource_type, attempt, status=PartStatus.FAILED, counts=counts,
                 requests=requests, error=f"connector {connector.name!r}: {describe_error(exc)}")
        _observe(connector.name, resource_type, PartStatus.FAILED, clock, stats)
        return PartResult(ran=True, status=PartStatus.FAILED, reason=describe_error(exc))
    counts = dict(resources.counts + (grants.counts if grants else Counter()))
    status = PartStatus.SUCCEEDED if held is None else PartStatus.HELD
    error = None if status == PartStatus.SUCCEEDED else (
        f"deletion held: {held}; nothing of this type was deleted. If JumpCloud really lost them, run "
        f"`jumpsync deletions approve {connector.name} --type {resource_type}` and sync again")
    end_part(engine, run_id, resource_type, attempt, status=status, counts=counts, requests=requests,
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
