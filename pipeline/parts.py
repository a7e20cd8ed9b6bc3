"""Running one part of a sync: a fetch part (one resource type from the API) or a derived part (computed from
what the fetch parts stored). Plain functions of an engine and a connector config: no Celery here.

A part that fails deletes nothing: deletion happens only after the whole listing of its type came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from connector import FETCH_SYNCERS
from connector.admins import link_admins
from connector.apps import derive_access_via_groups
from connector.records import GrantRecord
from connector.roles import derive_roles
from jumpcloud.client import JumpCloudClient
from jumpcloud.retry import RetryPolicy
from models.store import GrantWriter, ResourceWriter
from models.tables import Grant, Resource, SyncPart, utcnow
from pipeline.runs import DERIVED_PARTS, USABLE_PART_STATUSES, claim_part, end_part
from telemetry import metrics
from pipeline.valve import Deletion, hold_reason, use_approval
from worker.settings import ConnectorConfig, SyncSettings

log = logging.getLogger(__name__)

GRANT_BATCH_SCOPES = 100

ClientFactory = Callable[[ConnectorConfig], JumpCloudClient]


def make_client(connector: ConnectorConfig, broker_url: str | None = None) -> JumpCloudClient:
    """The API client for a connector; the key is read here, at the last moment, and never stored. With
    fleet-wide limits configured, the client also takes a slot of the connector's budget in Redis."""
    limiter = None
    if broker_url and (connector.shared_max_in_flight or connector.rate_limit):
        from worker.budget import RedisBudget

        limiter = RedisBudget(broker_url, connector.name, max_in_flight=connector.shared_max_in_flight,
                              rate=connector.rate_limit)
    return JumpCloudClient(
        base_url=connector.base_url, api_key=connector.api_key(), org_id=connector.org_id,
        timeout=connector.timeout, max_in_flight=connector.max_in_flight,
        retry=RetryPolicy(max_attempts=connector.max_attempts, base_delay=connector.backoff_base),
        verify=str(connector.ca_bundle) if connector.ca_bundle else True,
        on_response=metrics.api_observer(connector.name),
        limiter=limiter,
    )


@dataclass(frozen=True)
class PartResult:
    ran: bool
    status: str | None = None
    reason: str | None = None


def describe_error(exc: BaseException) -> str:
    """A one-line error for the run record. Our errors never carry the key; other text is cut short."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]


async def _fetch(connector: ConnectorConfig, resource_type: str, resources: ResourceWriter,
                 grants: GrantWriter | None, client_factory: ClientFactory, stats: list) -> int:
    """Stream the listing into the writers; returns the number of HTTP requests made. ``stats`` receives the
    client's stats, so that a failed part still reports what it sent."""
    client = client_factory(connector)
    stats.append(client.stats)
    async with client:
        syncer = FETCH_SYNCERS[resource_type](client)
        async for page in syncer.resources():
            resources.write(page)
            if grants is None:
                continue
            batch: dict[str, list[GrantRecord]] = {}
            async for resource_id, resource_grants in syncer.grants(page):
                batch[resource_id] = resource_grants
                if len(batch) >= GRANT_BATCH_SCOPES:
                    grants.write_scopes(batch)
                    batch = {}
            grants.write_scopes(batch)
        return client.stats.requests


def run_fetch_part(engine: Engine, connector: ConnectorConfig, run_id: int, resource_type: str,
                   client_factory: ClientFactory = make_client, limits: SyncSettings = SyncSettings()) -> PartResult:
    """Claim and run one fetch part; once the whole listing came back, mark what was not seen as deleted,
    unless that is so much that the deletion safety valve holds it."""
    claim = claim_part(engine, run_id, resource_type)
    if claim.attempt is None:
        return PartResult(ran=False, reason=claim.reason)
    now = utcnow()
    resources = ResourceWriter(engine, claim.connector_id, resource_type, now, run_id)
    source = FETCH_SYNCERS[resource_type].grant_source
    grants = GrantWriter(engine, claim.connector_id, resource_type, source, now, run_id) if source else None
    requests, stats, clock = 0, [], metrics.Stopwatch()
    try:
        requests = asyncio.run(_fetch(connector, resource_type, resources, grants, client_factory, stats))
        held = None
        inconsistent = stats[0].inconsistent_pages
        if inconsistent:
            # The data changed while it was listed (or a total was wrong): what was seen is written, but an
            # absence proves nothing. The next sync, with a clean listing, deletes what is really gone.
            resources.counts["inconsistent_pages"] = inconsistent
            resources.counts["deletions_deferred"] = 1
            log.warning("listing changed while it was read; deletions deferred to the next sync",
                        extra={"connector": connector.name, "run_id": run_id, "part": resource_type,
                               "inconsistent_pages": inconsistent})
        else:
            held = _hold_reason(engine, claim.connector_id, run_id, resource_type, resources, grants, limits)
            if held is None:
                resources.delete_unseen()
                if grants is not None:
                    grants.apply_deletions()
    except Exception as exc:  # noqa: BLE001  (any failure fails the part; nothing of its type is deleted)
        log.warning("sync part failed", extra={"connector": connector.name, "run_id": run_id,
                                               "part": resource_type, "error": describe_error(exc)})
        counts = dict(resources.counts + (grants.counts if grants else Counter()))
        requests = stats[0].requests if stats else 0
        end_part(engine, run_id, resource_type, claim.attempt, status="failed", counts=counts,
                 requests=requests, error=f"connector {connector.name!r}: {describe_error(exc)}")
        _observe(connector.name, resource_type, "failed", clock, stats)
        return PartResult(ran=True, status="failed", reason=describe_error(exc))
    counts = dict(resources.counts + (grants.counts if grants else Counter()))
    status = "succeeded" if held is None else "held"
    error = None if status == "succeeded" else (
        f"deletion held: {held}; nothing of this type was deleted. If JumpCloud really lost them, run "
        f"`jumpsync deletions approve {connector.name} --type {resource_type}` and sync again")
    end_part(engine, run_id, resource_type, claim.attempt, status=status, counts=counts, requests=requests,
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


def _observe(connector: str, part: str, status: str, clock: metrics.Stopwatch, stats: list) -> None:
    metrics.observe_part(connector, part, status, clock.seconds)
    if stats:
        metrics.count_retries(connector, stats[0].retries)


# --- derived parts -------------------------------------------------------------------------------------------

def _live(session: Session, connector_id: int, resource_type: str):
    table = Resource.__table__
    return session.execute(select(table.c.external_id, table.c.email, table.c.profile, table.c.linked_user_id)
                           .where(table.c.connector_id == connector_id, table.c.type == resource_type,
                                  table.c.deleted_at.is_(None))).all()


def derive_roles_part(engine: Engine, connector_id: int, run_id: int | None = None) -> Counter:
    now = utcnow()
    with Session(engine) as session:
        admins = [(row.external_id, list((row.profile or {}).get("role_names", [])))
                  for row in _live(session, connector_id, "admin")]
    roles, assigned = derive_roles(admins)
    resources = ResourceWriter(engine, connector_id, "role", now, run_id)
    resources.write(roles)
    resources.delete_unseen()
    grants = GrantWriter(engine, connector_id, "role", "role", now, run_id)
    scopes: dict[str, list[GrantRecord]] = {role.id: [] for role in roles}
    for grant in assigned:
        scopes[grant.resource_id].append(grant)
    grants.write_scopes(scopes)
    grants.delete_unseen_scopes()
    return resources.counts + grants.counts


def derive_admin_links_part(engine: Engine, connector_id: int, run_id: int | None = None) -> Counter:
    counts: Counter = Counter()
    table = Resource.__table__
    with Session(engine) as session:
        admins = _live(session, connector_id, "admin")
        users = [(row.external_id, row.email) for row in _live(session, connector_id, "user")]
        links = link_admins(((row.external_id, row.email) for row in admins), users)
        for row in admins:
            counts["admins_linked"] += links[row.external_id] is not None
            if links[row.external_id] != row.linked_user_id:
                session.execute(update(table).where(
                    table.c.connector_id == connector_id, table.c.type == "admin",
                    table.c.external_id == row.external_id).values(linked_user_id=links[row.external_id]))
                counts["rows_written"] += 1
        session.commit()
    return counts


def derive_app_via_group_part(engine: Engine, connector_id: int, run_id: int | None = None) -> Counter:
    now = utcnow()
    grant = Grant.__table__
    with Session(engine) as session:
        apps = [row.external_id for row in _live(session, connector_id, "app")]
        bound = session.execute(select(grant.c.resource_id, grant.c.principal_id).where(
            grant.c.connector_id == connector_id, grant.c.source == "app", grant.c.principal_type == "group",
            grant.c.deleted_at.is_(None))).all()
        members: dict[str, list[str]] = {}
        bound_groups = {group_id for _, group_id in bound}
        rows = session.execute(select(grant.c.resource_id, grant.c.principal_id).where(
            grant.c.connector_id == connector_id, grant.c.source == "group", grant.c.deleted_at.is_(None)))
        for group_id, user_id in rows:
            if group_id in bound_groups:
                members.setdefault(group_id, []).append(user_id)
    derived = derive_access_via_groups(bound, members)
    writer = GrantWriter(engine, connector_id, "app", "app_via_group", now, run_id)
    for start in range(0, len(apps), GRANT_BATCH_SCOPES):
        writer.write_scopes({app_id: derived.get(app_id, []) for app_id in apps[start:start + GRANT_BATCH_SCOPES]})
    writer.delete_unseen_scopes()
    return writer.counts


DERIVERS: dict[str, Callable[[Engine, int, int | None], Counter]] = {
    "role": derive_roles_part,
    "admin_link": derive_admin_links_part,
    "app_via_group": derive_app_via_group_part,
}


def run_derived_parts(engine: Engine, run_id: int) -> None:
    """Run each derived part whose inputs all succeeded in this run; skip (and delete nothing) otherwise."""
    with Session(engine) as session:
        parts = {p.name: p for p in session.exec(select(SyncPart).where(SyncPart.run_id == run_id)).scalars()}
    for name, inputs in DERIVED_PARTS.items():
        if name not in parts or parts[name].status != "pending":
            continue
        claim = claim_part(engine, run_id, name, run_status="finalizing")
        if claim.attempt is None:
            continue
        not_ok = [i for i in inputs if parts.get(i) is None or parts[i].status not in USABLE_PART_STATUSES]
        if not_ok:
            end_part(engine, run_id, name, claim.attempt, status="skipped",
                     error=f"input part(s) {', '.join(not_ok)} did not succeed; nothing derived or deleted")
            continue
        clock = metrics.Stopwatch()
        try:
            counts = DERIVERS[name](engine, claim.connector_id, run_id)
        except Exception as exc:  # noqa: BLE001
            end_part(engine, run_id, name, claim.attempt, status="failed", error=describe_error(exc))
            metrics.observe_part(claim.connector_name, name, "failed", clock.seconds)
            continue
        end_part(engine, run_id, name, claim.attempt, status="succeeded", counts=dict(counts))
        metrics.observe_part(claim.connector_name, name, "succeeded", clock.seconds)
