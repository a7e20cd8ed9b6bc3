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
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine

from config.settings import ConnectorConfig, parse_duration
from connector import FETCH_SYNCERS
from connector.base import collect
from connector.client_factory import ClientFactory, describe_error, make_client
from connector.events import Touched, event_time, reduce_events
from connector.records import GrantRecord, ResourceRecord
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import BadResponseError
from jumpcloud.events import event_pages
from models.connectors import registered_connector_id
from models.states import RefreshOutcome, RunStatus
from models.store import GrantWriter, ResourceWriter
from models.tables import utcnow
from pipeline import event_cursor
from pipeline.derived import AccessScope, derive_admin_links_part, derive_app_via_group_part, derive_roles_part
from pipeline.events_runs import end_events_run, open_events_run
from pipeline.runs import FullSync, active_run, last_complete_sync
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
    """What one refresh did (the outcomes are ``models.states.RefreshOutcome``, described in docs/incremental.md)."""

    outcome: RefreshOutcome
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
    for (target, object_id, _), result in zip(jobs, results[:-1], strict=True):
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
    for grants in (members, bindings):
        grants.apply_deletions()
        counts += grants.counts

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
    result = _Refresh(engine, connector, connector_id, state, client_factory, events_client_factory).run()
    log_extra = {"connector": connector.name, "outcome": result.outcome, "reason": result.reason,
                 "requests": result.requests, "events": result.events, "reads": result.reads}
    noteworthy = result.outcome in (RefreshOutcome.FAILED, RefreshOutcome.FULL_SYNC)
    (log.warning if noteworthy else log.info)("incremental refresh", extra=log_extra)
    return result


class _Ended(Exception):
    """A step ended the refresh early; ``result`` is already recorded."""

    def __init__(self, result: RefreshResult) -> None:
        super().__init__(result.outcome)
        self.result = result


class _Refresh:
    """One refresh of one connector: the cursor state it reads and moves, and one method per step of the module's
    docstring. A step that ends the refresh raises ``_Ended`` with the recorded result."""

    def __init__(self, engine: Engine, connector: ConnectorConfig, connector_id: int,
                 state: event_cursor.CursorState, client_factory: ClientFactory,
                 events_client_factory: ClientFactory) -> None:
        self.engine = engine
        self.connector = connector
        self.connector_id = connector_id
        self.state = state
        self.client_factory = client_factory
        self.events_client_factory = events_client_factory
        self.overlap = parse_duration(connector.events_overlap)
        #: The cursor moved up to a full sync's start: recorded even if the refresh then fails.
        self.rebased = False
        #: The end of the events' window, and the cursor's next position.
        self.now = utcnow()
        self.event_requests = 0
        self.fresh: list[dict[str, Any]] = []

    def run(self) -> RefreshResult:
        try:
            baseline = self._baseline()
            self._read_events(baseline)
            touched = self._interpret(baseline)
        except _Ended as ended:
            return ended.result
        if not touched:
            self._advance()
            return self._finish(self._result(RefreshOutcome.QUIET), moved=True)
        return self._apply(touched, baseline)

    # --- the steps ----------------------------------------------------------------------------------------------

    def _baseline(self) -> FullSync:
        """The full sync the events apply on top of, with the cursor moved up to its start."""
        active = active_run(self.engine, self.connector_id)
        if active is not None:
            raise _Ended(self._finish(self._result(RefreshOutcome.SKIPPED, f"run {active[0]} ({active[1]}) is active")))
        baseline = last_complete_sync(self.engine, self.connector_id)
        if baseline is None:
            raise _Ended(self._finish(self._result(
                RefreshOutcome.WAITING, "no full sync has read every type yet: events apply on top of one")))
        self.rebased = self.state.rebase(baseline.started_at, self.overlap)
        return baseline

    def _read_events(self, baseline: FullSync) -> None:
        """The events of the window not applied yet, into ``fresh``."""
        self.now = utcnow()
        # Before a full sync's start, read back only CLOCK_SKEW: that start is the worker's clock, the events'
        # timestamps JumpCloud's; older events are in the sync's data. Events applied since are skipped by id.
        start = max(self._cursor - self.overlap, baseline.started_at - CLOCK_SKEW)
        if start < self.now - parse_duration(self.connector.events_retention):
            raise _Ended(self._ask_full_sync(
                f"the cursor ({self._cursor.isoformat(timespec='seconds')}) is older than the events' retention "
                f"({self.connector.events_retention})"))
        client = None
        try:
            client = self.events_client_factory(self.connector)  # reads the key: a missing one fails this refresh only
            self.fresh = asyncio.run(read_new_events(client, start, self.now, self.state.seen))
        except BadResponseError as exc:  # the listing broke off: events may be missing, so a full sync decides
            self.event_requests = client.stats.requests if client else 0
            raise _Ended(self._ask_full_sync(
                f"gap: the events listing was inconsistent ({describe_error(exc)})")) from exc
        except Exception as exc:  # the cursor stays; the next refresh reads the same window
            self.event_requests = client.stats.requests if client else 0
            raise _Ended(self._fail(f"reading events: {describe_error(exc)}")) from exc
        self.event_requests = client.stats.requests

    def _interpret(self, baseline: FullSync) -> Touched:
        """The objects the events name, unless reading them back cannot be trusted or costs too much."""
        touched = reduce_events(self.fresh, self.connector.resource_types)
        # An event older than the last full sync's start is in its data even if it cannot be read: no reason to
        # ask.
        unreadable = touched.uninterpretable and reduce_events(
            [e for e in self.fresh if (event_time(e) or self.now) >= baseline.started_at],
            self.connector.resource_types).uninterpretable
        if unreadable:
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise _Ended(self._ask_full_sync(f"an event cannot be interpreted: {unreadable[0]}{more}"))
        budget = min(baseline.requests, MAX_READS)
        if touched.reads > budget:
            yardstick = "requests of the last full sync" if budget == baseline.requests else "a refresh reads"
            raise _Ended(self._ask_full_sync(
                f"the events name {touched.reads} objects to read back, more than the {budget} {yardstick}"))
        return touched

    def _apply(self, touched: Touched, baseline: FullSync) -> RefreshResult:
        """Read back what the events name and write it in an incremental run; then move the cursor."""
        run_id = open_events_run(self.engine, self.connector_id)
        if run_id is None:
            return self._finish(self._result(RefreshOutcome.SKIPPED, "a run of the connector began meanwhile"))
        client = None
        try:
            client = self.client_factory(self.connector)
            found = asyncio.run(read_back(client, touched))
            counts = apply(self.engine, self.connector_id, run_id, touched, found, self.connector.resource_types)
        except Exception as exc:  # noqa: BLE001  (nothing moves; the next refresh reads the same events again)
            spent = client.stats.requests if client else 0
            end_events_run(self.engine, run_id, status=RunStatus.FAILED, counts={},
                           requests=self.event_requests + spent, error=describe_error(exc))
            return self._fail(f"reading back: {describe_error(exc)}", run_id=run_id, read_requests=spent,
                              reads=touched.reads)
        counts.update(events=len(self.fresh), ignored=touched.ignored, reads=touched.reads,
                      event_requests=self.event_requests)
        read_requests = client.stats.requests
        if not end_events_run(self.engine, run_id, status=RunStatus.SUCCEEDED, counts=dict(counts),
                              requests=self.event_requests + read_requests):
            return self._fail(f"run {run_id} was ended by the reaper before this refresh ended it", run_id=run_id,
                              read_requests=read_requests, reads=touched.reads)
        written = utcnow()
        # The lag of what this refresh brought: not of events a full sync had already brought (read again for skew).
        lags = [(written - moment).total_seconds() for moment in touched.times if moment >= baseline.started_at]
        self._advance()
        return self._finish(self._result(RefreshOutcome.APPLIED, run_id=run_id, read_requests=read_requests,
                                         reads=touched.reads, rows_written=counts.get("rows_written", 0),
                                         lag_seconds=round(max(lags), 3) if lags else None),
                            moved=True, lags=lags)

    # --- the cursor and the outcome -----------------------------------------------------------------------------

    @property
    def _cursor(self) -> datetime:
        cursor = self.state.cursor
        assert cursor is not None, "rebase sets the cursor before any event is read"
        return cursor

    def _advance(self) -> None:
        """Move the cursor to the window's end, remembering the events applied that the next window overlaps."""
        applied = {e["id"]: event_cursor.epoch_ms(event_time(e) or self.now) for e in self.fresh
                   if isinstance(e.get("id"), str)}
        self.state.seen = event_cursor.window({**self.state.seen, **applied}, self.now, self.overlap)
        self.state.cursor = self.now

    def _result(self, outcome: RefreshOutcome, reason: str | None = None, **details: Any) -> RefreshResult:
        """A result with what was read of the events so far."""
        return RefreshResult(outcome, reason, event_requests=self.event_requests, events=len(self.fresh), **details)

    def _finish(self, result: RefreshResult, *, moved: bool = False, lags: Sequence[float] = ()) -> RefreshResult:
        event_cursor.record(self.engine, self.state, result.outcome, reason=result.reason,
                            moved=moved or self.rebased, run_id=result.run_id, requests=result.requests,
                            events=result.events, reads=result.reads, lag_seconds=result.lag_seconds,
                            asked_full_sync=result.full_sync)
        metrics.observe_refresh(self.connector.name, result.outcome, result.event_requests, result.read_requests,
                                list(lags))
        return result

    def _fail(self, reason: str, **details: Any) -> RefreshResult:
        """A refresh that could not finish: the next one tries the same window; stuck too long, a full sync."""
        if utcnow() - self._cursor > STUCK_AFTER:
            return self._ask_full_sync(f"no refresh has succeeded since {self._cursor.isoformat(timespec='seconds')}: "
                                       f"{reason}", **details)
        return self._finish(self._result(RefreshOutcome.FAILED, reason, **details))

    def _ask_full_sync(self, reason: str, **details: Any) -> RefreshResult:
        now = utcnow()
        asked = self.state.full_sync_asked_at
        if asked is not None and now - asked < FULL_SYNC_ASK_AGAIN:
            return self._finish(self._result(
                RefreshOutcome.WAITING,
                f"{reason}; a full sync was asked for at {asked.isoformat(timespec='seconds')}", **details))
        self.state.full_sync_asked_at = now
        return self._finish(self._result(RefreshOutcome.FULL_SYNC, reason, full_sync=True, **details))
