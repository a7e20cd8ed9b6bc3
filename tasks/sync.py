"""Sync tasks: thin wrappers that call ``pipeline.sync``. Arguments are names and ids, never secrets."""

from __future__ import annotations

import time

import redis
from celery import shared_task

from config.settings import parse_duration
from models import history
from models.states import Trigger
from models.tables import utcnow
from pipeline import pruning, reaper, sync
from tasks.access import access_refresh
from worker import broker_epoch, pending_triggers, runtime
from worker.beat import EVENTS_PREFIX, entry_name
from worker.memory import release_freed_memory
from worker.names import Priority, TaskName
from worker.retries import ON_DATABASE_ERRORS

#: The last part finalizes its run itself while at least this share of ``part_time_limit`` is left to its task;
#: past that, it sends the finalizer, which gets a time limit of its own.
INLINE_FINALIZE_SHARE = 0.5

#: A full sync that finds an incremental refresh of its connector running (seconds long) tries again this often,
#: for longer than a refresh can stay active (``pipeline.events_runs.EVENTS_RUN_STALE_AFTER``); then it records a skip.
RETRY_AFTER_REFRESH = 5


@shared_task(name=TaskName.SYNC_CONNECTOR, bind=True, max_retries=120)
def sync_connector(self, connector: str, trigger: str = Trigger.SCHEDULE, trigger_token: str | None = None) -> dict:
    """Open a run for a connector and fan out one part per fetched resource type. A scheduled trigger carries the
    token of its mark (``worker.pending_triggers``), cleared as it starts so that beat may send the next."""
    if trigger_token is not None and not self.request.retries:
        pending_triggers.release(runtime.settings().broker_url, entry_name(connector), trigger_token)
    waited_enough = self.request.retries >= self.max_retries
    started = sync.begin(runtime.settings_for(connector), runtime.engine(), connector, trigger=Trigger(trigger),
                         task_id=self.request.id, wait_for_refresh=not waited_enough)
    if started.retry:
        raise self.retry(countdown=RETRY_AFTER_REFRESH)
    for resource_type in started.parts:
        sync_part.delay(started.run_id, resource_type, connector)
    return {"run_id": started.run_id, "skipped": started.skipped, "reason": started.reason}


@shared_task(name=TaskName.SYNC_PART, **ON_DATABASE_ERRORS)
def sync_part(run_id: int, resource_type: str, connector: str) -> dict:
    """Fetch one resource type into the database; the part that completes the set finalizes the run right
    there, with no hop through the broker (a sizeable share of a small tenant's sync: docs/benchmarks.md), unless
    the part used so much of the task's time limit that the finalizer might not fit in the rest: it is then
    sent. A retry of this task after its part ended, while the run is still finalizing, finalizes again: the
    finalizer is idempotent."""
    started = time.monotonic()
    settings = runtime.settings_for(connector)
    step = sync.run_part(settings, runtime.engine(), run_id, resource_type, connector)
    outcome = {"run_id": run_id, "part": resource_type, "status": step.result.status, "reason": step.result.reason}
    if step.finalize:
        limit = parse_duration(settings.file.sync.part_time_limit).total_seconds()
        if time.monotonic() - started < limit * INLINE_FINALIZE_SHARE:
            release_freed_memory()  # the part's peak, before the derivations add theirs
            outcome["run_status"] = _finalize(run_id, connector)
        else:
            sync_finalize.delay(run_id, connector)
    return outcome


@shared_task(name=TaskName.SYNC_FINALIZE, **ON_DATABASE_ERRORS)
def sync_finalize(run_id: int, connector: str) -> dict:
    """The finalizer on its own: what the reaper sends for a run whose fetch parts all ended but that nobody
    finalized (the last part's process died first)."""
    return {"run_id": run_id, "connector": connector, "status": _finalize(run_id, connector)}


def _finalize(run_id: int, connector: str) -> str:
    """Derive roles, admin links and access through groups, close the run, then ask for the connector's report
    and export to be rendered; the run's final status."""
    summary = sync.finalize(runtime.engine(), run_id)
    access = runtime.settings().file.access
    if access.snapshots:  # the run has ended: render its report and export (docs/access.md), or drop the ask
        access_refresh.apply_async((connector,), expires=parse_duration(access.refresh_interval).total_seconds())
    return summary.status


@shared_task(name=TaskName.SYNC_EVENTS, soft_time_limit=300, time_limit=360)
def sync_events(connector: str, trigger_token: str | None = None) -> dict:
    """Refresh what the connector's Directory Insights events name; send a full sync when the refresh asks for
    one, and the rendering of the report and export when it wrote something. Sent by beat, it carries the token
    of its mark (``worker.pending_triggers``), cleared as it starts."""
    settings = runtime.settings_for(connector)
    if trigger_token is not None:
        pending_triggers.release(settings.broker_url, EVENTS_PREFIX + connector, trigger_token)
    result = sync.refresh_events(settings, runtime.engine(), connector)
    if result is None:
        return {"connector": connector, "outcome": "off"}
    if result.full_sync:
        sync_connector.apply_async((connector,), {"trigger": Trigger.FALLBACK}, priority=int(Priority.ASKED))
    if result.rows_written and settings.file.access.snapshots:
        access_refresh.apply_async((connector,),
                                   expires=parse_duration(settings.file.access.refresh_interval).total_seconds())
    return {"connector": connector, "outcome": result.outcome, "reason": result.reason, "run_id": result.run_id,
            "requests": result.requests, "events": result.events, "reads": result.reads}


@shared_task(name=TaskName.HISTORY_PRUNE)
def history_prune() -> dict:
    """Drop change history older than ``[history] retention``, and incremental and skipped runs older than a
    week."""
    retention = parse_duration(runtime.settings().file.history.retention)
    week_ago = utcnow() - pruning.EVENTS_RUN_RETENTION
    return {"deleted": history.prune(runtime.engine(), utcnow() - retention),
            "events_runs_deleted": pruning.prune_events_runs(runtime.engine(), week_ago),
            "skipped_runs_deleted": pruning.prune_skipped_runs(runtime.engine(), week_ago)}


@shared_task(name=TaskName.SYNC_REAP)
def sync_reap() -> dict:
    """Fail runs that went stale; send again the parts and finalizers whose messages were lost (all those the
    active runs wait for when the broker lost its data)."""
    settings = runtime.settings()
    reaped = reaper.reap(runtime.engine(), parse_duration(settings.file.sync.stale_run_after))
    client = redis.Redis.from_url(settings.broker_url)
    try:
        wiped = broker_epoch.data_lost(client)
    finally:
        client.close()
    if wiped:
        waiting = reaper.waiting_on_broker(runtime.engine())
        reaped.parts += [part for part in waiting.parts if part not in reaped.parts]
        reaped.finalize += [run for run in waiting.finalize if run not in reaped.finalize]
    for run_id, part, connector in reaped.parts:
        sync_part.delay(run_id, part, connector)
    for run_id, connector in reaped.finalize:
        sync_finalize.delay(run_id, connector)
    return {"failed_runs": reaped.failed_runs, "parts": len(reaped.parts), "finalize": len(reaped.finalize),
            "broker_data_lost": wiped}
