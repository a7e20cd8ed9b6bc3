"""The incremental refresh: the changes JumpCloud's Directory Insights events name, read back and written within
a minute, between full syncs. Plain functions of an engine and a connector config: no Celery here.

One refresh (``refresh``):

1. nothing while a run of the connector is active (a full sync goes first; the next refresh moves the cursor up
   to that sync's start);
2. read the events in [cursor − overlap, now), skipping those already applied (``pipeline.event_cursor``);
3. reduce them to the objects they name (``connector.events.reduce_events``);
4. read exactly those back from the API (one user, one user's memberships, one group's app bindings…) and
   write them in an incremental run (trigger ``events``) through the same store, history and derived parts as a
   full sync; then move the cursor.

It marks nothing deleted because it did not see it: an object is deleted when a delete event names it and
reading it back answers 404; a grant when an association event names it and reading back its holder's grants no
longer lists it; the edges of a deleted object go with it. It asks for a full sync instead
(``RefreshResult.full_sync``) when an event cannot be interpreted, the events listing broke off inconsistently
(a gap), the cursor is older than the events' retention,
reading back would cost more requests than the last full sync did (or ``MAX_READS``), or no refresh has succeeded
for ``STUCK_AFTER`` (the events API refuses, an object cannot be read): then the connector gets a full sync at
most every ``FULL_SYNC_ASK_AGAIN``, as it would without events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine

from config.settings import ConnectorConfig, parse_duration
from connector import FETCH_SYNCERS
from connector.base import collect
from connector.events import Touched, event_time, reduce_events
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import BadResponseError
from jumpcloud.events import event_pages
from models.store import GrantWriter, ResourceWriter
from models.tables import utcnow
from pipeline import event_cursor
from pipeline.derived import AccessScope, derive_admin_links_part, derive_app_via_group_part, derive_roles_part
from pipeline.parts import ClientFactory, describe_error, make_client
from pipeline.runs import active_run, end_events_run, last_complete_sync, open_events_run, registered_connector_id
from telemetry import metrics

log = logging.getLogger(__name__)

#: A refresh that asked for a full sync asks again only after this: the hourly full sync a connector has without
#: events (a full sync that keeps failing is not re-sent every minute).
FULL_SYNC_ASK_AGAIN = timedelta(hours=1)
#: Refreshes failing this long (the cursor has not moved) hand over to the full sync.
STUCK_AFTER = timedelta(minutes=15)
#: How far before a full sync's start its first refresh reads: the worker's clock (the start) against JumpCloud's
#: (the events).
CLOCK_SKEW = timedelta(seconds=30)
#: At most this many objects are read back in one refresh (more: a full sync), so that a refresh stays well
#: within its task's time limit (300 s) at JumpCloud's latency.
MAX_READS = 2000


@dataclass
class RefreshResult:
    """What one refresh did (the ``outcome`` values are in docs/incremental.md)."""

    outcome: str
    reason: str | None = None
    run_id: int | None = None
    event_requests: int = 0
    read_requests: int = 0
    events: int = 0
    reads: int = 0
    rows_written: int = 0
    lag_seconds: float | None = None
    #: The caller should send a full sync of the connector now.
    full_sync: bool = False

    @property
    def requests(self) -> int:
        return self.event_requests + self.read_requests


@dataclass
class ReadBack:
    """The current state of every object the events named; None where JumpCloud answered 404."""

    users: dict[str, ResourceRecord | None] = field(default_factory=dict)
    groups: dict[str, ResourceRecord | None] = field(default_factory=dict)
    apps: dict[str, ResourceRecord | None] = field(default_factory=dict)
    admins: list[ResourceRecord] | None = None
    memberships: dict[str, list[GrantRecord] | None] = field(default_factory=dict)    # user -> member grants
    user_bindings: dict[str, list[GrantRecord] | None] = field(default_factory=dict)  # user -> app access
    group_bindings: dict[str, list[GrantRecord] | None] = field(default_factory=dict)  # group -> app access


def events_client(connector: ConnectorConfig, broker_url: str | None = None) -> JumpCloudClient:
    """The client of the Directory Insights API: another host, the same key, retries and budget."""
    return make_client(connector, broker_url, base_url=connector.events_url)


async def read_new_events(client: JumpCloudClient, start: datetime, end: datetime,
                          seen: dict[str, int]) -> list[dict[str, Any]]:
    """The events in [start, end) not applied before, each once (an event listed twice is kept once)."""
    fresh: list[dict[str, Any]] = []
    ids: set[str] = set(seen)
    async with client:
        async for page in event_pages(client, start, end):
            for event in page.events:
                event_id = event.get("id")
                if isinstance(event_id, str):
                    if event_id in ids:
                        continue
                    ids.add(event_id)
                fresh.append(event)
    return fresh


async def read_back(client: JumpCloudClient, touched: Touched) -> ReadBack:
    """Read every object ``touched`` names, at once (the client bounds the requests in flight)."""
    users, groups, apps = (FETCH_SYNCERS["user"](client), FETCH_SYNCERS["group"](client),
                           FETCH_SYNCERS["app"](client))
    out = ReadBack()
    jobs: list[tuple[dict, str, Awaitable]] = []
    for target, ids, read in (
            (out.users, touched.users | touched.deleted_users, users.get),
            (out.groups, touched.groups | touched.deleted_groups, groups.get),
            (out.apps, touched.apps | touched.deleted_apps, apps.get),
            (out.memberships, touched.user_groups, groups.memberships),
            (out.user_bindings, touched.user_apps, partial(apps.bindings, "user")),
            (out.group_bindings, touched.group_apps, partial(apps.bindings, "group"))):
        jobs += [(target, object_id, read(object_id)) for object_id in sorted(ids)]

    async with client:
        results = await asyncio.gather(*(job for _, _, job in jobs),
                                       collect(FETCH_SYNCERS["admin"](client).resources()) if touched.admins
                                       else _none())
    for (target, object_id, _), result in zip(jobs, results):
        target[object_id] = result
    out.admins = results[-1]
    return out


async def _none() -> None:
    return None


def apply(engine: Engine, connector_id: int, run_id: int, touched: Touched, found: ReadBack,
          resource_types: tuple[str, ...]) -> Counter:
    """Write what was read back, in the run, and re-derive what depends on it. Returns the writers' counts."""
    now = utcnow()
    counts: Counter = Counter()
    gone = {kind: {i for i in deleted if found_map.get(i, "absent") is None}
            for kind, deleted, found_map in (("user", touched.deleted_users, found.users),
                                             ("group", touched.deleted_groups, found.groups),
                                             ("app", touched.deleted_apps, found.apps))}
    for kind, found_map in (("user", found.users), ("group", found.groups), ("app", found.apps)):
        if not found_map:
            continue
        writer = ResourceWriter(engine, connector_id, kind, now, run_id, only=found_map)
        writer.write([record for record in found_map.values() if record is not None])
        writer.delete(gone[kind])
        counts += writer.counts
    if found.admins is not None:
        writer = ResourceWriter(engine, connector_id, "admin", now, run_id, incremental=True)
        writer.write(found.admins)
        writer.delete(touched.deleted_admins - {admin.id for admin in found.admins})
        counts += writer.counts

    members = GrantWriter(engine, connector_id, "group", "group", now, run_id, incremental=True)
    bindings = GrantWriter(engine, connector_id, "app", "app", now, run_id, incremental=True)
    members.write_principal_scopes("user", {u: g for u, g in found.memberships.items() if g is not None},
                                   touched.edges["member"])
    members.plan_deletion(resource_ids=gone["group"], principal_ids=gone["user"])
    bindings.write_principal_scopes("user", {u: g for u, g in found.user_bindings.items() if g is not None},
                                    touched.edges["user_app"])
    bindings.write_principal_scopes("group", {g: b for g, b in found.group_bindings.items() if b is not None},
                                    touched.edges["group_app"])
    bindings.plan_deletion(resource_ids=gone["app"], principal_ids=gone["user"] | gone["group"])
    for writer in (members, bindings):
        writer.apply_deletions()
        counts += writer.counts

    types = set(resource_types)
    if found.admins is not None and "role" in types:
        counts += derive_roles_part(engine, connector_id, run_id)
    if (found.admins is not None or found.users) and {"admin", "user"} <= types:
        counts += derive_admin_links_part(engine, connector_id, run_id)
    if {"app", "group"} <= types:
        scope = AccessScope(users=set(found.memberships) | gone["user"],
                            groups=set(found.group_bindings) | gone["group"], apps=gone["app"] | set(found.apps))
        if scope.users or scope.groups or scope.apps:
            counts += derive_app_via_group_part(engine, connector_id, run_id, scope)
    return counts


def refresh(engine: Engine, connector: ConnectorConfig, *, broker_url: str | None = None,
            client_factory: ClientFactory | None = None, events_client_factory: ClientFactory | None = None
            ) -> RefreshResult:
    """One incremental refresh of ``connector`` (see the module's docstring)."""
    client_factory = client_factory or partial(make_client, broker_url=broker_url)
    events_client_factory = events_client_factory or partial(events_client, broker_url=broker_url)
    connector_id = registered_connector_id(engine, connector)
    state = event_cursor.load(engine, connector_id)
    result = _refresh(engine, connector, connector_id, state, client_factory, events_client_factory)
    log_extra = {"connector": connector.name, "outcome": result.outcome, "reason": result.reason,
                 "requests": result.requests, "events": result.events, "reads": result.reads}
    (log.warning if result.outcome in ("failed", "full_sync") else log.info)("incremental refresh", extra=log_extra)
    return result


def _refresh(engine: Engine, connector: ConnectorConfig, connector_id: int, state: event_cursor.CursorState,
             client_factory: ClientFactory, events_client_factory: ClientFactory) -> RefreshResult:
    overlap = parse_duration(connector.events_overlap)

    rebased = False

    def finish(result: RefreshResult, *, moved: bool = False, lags: list[float] = ()) -> RefreshResult:
        event_cursor.record(engine, state, result.outcome, reason=result.reason, moved=moved or rebased,
                            run_id=result.run_id,
                            requests=result.requests, events=result.events, reads=result.reads,
                            lag_seconds=result.lag_seconds, asked_full_sync=result.full_sync)
        metrics.observe_refresh(connector.name, result.outcome, result.event_requests, result.read_requests,
                                list(lags))
        return result

    def fail(reason: str, **known: Any) -> RefreshResult:
        """A refresh that could not finish: the next one tries the same window; stuck too long, a full sync."""
        if utcnow() - state.cursor > STUCK_AFTER:
            return ask_full_sync(f"no refresh has succeeded since {state.cursor.isoformat(timespec='seconds')}: "
                                 f"{reason}", **known)
        return finish(RefreshResult("failed", reason, **known))

    def ask_full_sync(reason: str, **known: Any) -> RefreshResult:
        now = utcnow()
        if state.full_sync_asked_at is not None and now - state.full_sync_asked_at < FULL_SYNC_ASK_AGAIN:
            return finish(RefreshResult("waiting", f"{reason}; a full sync was asked for at "
                                                   f"{state.full_sync_asked_at.isoformat(timespec='seconds')}",
                                        **known))
        state.full_sync_asked_at = now
        return finish(RefreshResult("full_sync", reason, full_sync=True, **known))

    active = active_run(engine, connector_id)
    if active is not None:
        return finish(RefreshResult("skipped", f"run {active[0]} ({active[1]}) is active"))
    baseline = last_complete_sync(engine, connector_id)
    if baseline is None:
        return finish(RefreshResult("waiting", "no full sync has read every type yet: events apply on top of one"))
    rebased = state.rebase(baseline.started_at, overlap)

    now = utcnow()
    # Before a full sync's start, read back only CLOCK_SKEW: that start is the worker's clock, the events'
    # timestamps JumpCloud's; older events are in the sync's data. Events applied since are skipped by id.
    start = max(state.cursor - overlap, baseline.started_at - CLOCK_SKEW)
    retention = parse_duration(connector.events_retention)
    if start < now - retention:
        return ask_full_sync(f"the cursor ({state.cursor.isoformat(timespec='seconds')}) is older than the events' "
                             f"retention ({connector.events_retention})")
    client = None
    try:
        client = events_client_factory(connector)  # reads the key: a missing one fails this refresh only
        fresh = asyncio.run(read_new_events(client, start, now, state.seen))
    except BadResponseError as exc:  # the listing broke off: events may be missing, so a full sync decides
        return ask_full_sync(f"gap: the events listing was inconsistent ({describe_error(exc)})",
                             event_requests=client.stats.requests)
    except Exception as exc:  # noqa: BLE001  (the cursor stays; the next refresh reads the same window)
        return fail(f"reading events: {describe_error(exc)}", event_requests=client.stats.requests if client else 0)
    event_requests = client.stats.requests
    touched = reduce_events(fresh, connector.resource_types)
    known = {"event_requests": event_requests, "events": len(fresh)}
    # An event older than the last full sync's start is in its data even if it cannot be read: no reason to ask.
    unreadable = touched.uninterpretable and reduce_events(
        [e for e in fresh if (event_time(e) or now) >= baseline.started_at], connector.resource_types).uninterpretable
    if unreadable:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        return ask_full_sync(f"an event cannot be interpreted: {unreadable[0]}{more}", **known)
    budget = min(baseline.requests, MAX_READS)
    if touched.reads > budget:
        return ask_full_sync(f"the events name {touched.reads} objects to read back, more than the {budget} "
                             f"{'requests of the last full sync' if budget == baseline.requests else 'a refresh reads'}",
                             **known)

    def advance() -> None:
        state.seen = event_cursor.window(
            {**state.seen, **{e["id"]: event_cursor.epoch_ms(event_time(e) or now) for e in fresh
                              if isinstance(e.get("id"), str)}}, now, overlap)
        state.cursor = now

    if not touched:
        advance()
        return finish(RefreshResult("quiet", None, **known), moved=True)
    run_id = open_events_run(engine, connector_id)
    if run_id is None:
        return finish(RefreshResult("skipped", "a run of the connector began meanwhile", **known))
    client = None
    try:
        client = client_factory(connector)
        found = asyncio.run(read_back(client, touched))
        counts = apply(engine, connector_id, run_id, touched, found, connector.resource_types)
    except Exception as exc:  # noqa: BLE001  (nothing moves; the next refresh reads the same events again)
        spent = client.stats.requests if client else 0
        end_events_run(engine, run_id, status="failed", counts={}, requests=event_requests + spent,
                       error=describe_error(exc))
        return fail(f"reading back: {describe_error(exc)}", run_id=run_id, read_requests=spent,
                    reads=touched.reads, **known)
    counts.update(events=len(fresh), ignored=touched.ignored, reads=touched.reads,
                  event_requests=event_requests)
    if not end_events_run(engine, run_id, status="succeeded", counts=dict(counts),
                          requests=event_requests + client.stats.requests):
        return fail(f"run {run_id} was ended by the reaper before this refresh ended it", run_id=run_id,
                    read_requests=client.stats.requests, reads=touched.reads, **known)
    written = utcnow()
    # The lag of what this refresh brought: not of events a full sync had already brought (read again for skew).
    lags = [(written - moment).total_seconds() for moment in touched.times if moment >= baseline.started_at]
    advance()
    return finish(RefreshResult("applied", None, run_id=run_id, read_requests=client.stats.requests,
                                reads=touched.reads, rows_written=counts.get("rows_written", 0),
                                lag_seconds=round(max(lags), 3) if lags else None, **known),
                  moved=True, lags=lags)
