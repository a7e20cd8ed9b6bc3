"""The beat scheduler: one ``jumpsync.sync.connector`` entry per connector (and its events refresh), one
``jumpsync.msp.discover`` entry per ``[[msp]]`` table, kept in step with the config file and the discovered
organisations while beat runs.

Built on RedBeat, which keeps entries in Redis and holds a lock so that only one beat process sends tasks: a
second beat started by mistake waits for the lock instead of doubling the syncs. Every
``sync.config_reload_interval`` the leader re-reads the settings (``worker.runtime``: the file and the
discovered organisations) and adds, changes or removes entries, so a connector added to the file or an
organisation discovered is scheduled without restarting anything; a discovery that changed something tells it
(``announce_discovery``) and it does so at its next tick.
"""

from __future__ import annotations

import copy
import logging
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import redis.exceptions
from celery.schedules import crontab
from celery.schedules import schedule as celery_schedule
from redbeat import RedBeatScheduler
from redbeat.schedulers import RedBeatSchedulerEntry, acquire_distributed_beat_lock, ensure_conf, get_redis
from redis.exceptions import LockNotOwnedError

from config.msp import MspConfig
from config.settings import ConfigError, ConnectorConfig, parse_duration
from models.states import Trigger
from worker import pending_triggers, runtime
from worker.names import TaskName

log = logging.getLogger(__name__)

ENTRY_PREFIX = "sync:"
EVENTS_PREFIX = "events:"
MSP_PREFIX = "msp:"
#: Bumped by a discovery that found organisations come, go or change: beat reconciles at its next tick instead of
#: waiting for ``config_reload_interval``.
DISCOVERY_CHANGED_KEY = "jumpsync:msp:changed"


#: The tasks beat sends for each connector: one of each waits at a time (``worker.pending_triggers``).
MARKED_TASKS = frozenset({TaskName.SYNC_CONNECTOR, TaskName.SYNC_EVENTS})


def entry_name(connector_name: str) -> str:
    return ENTRY_PREFIX + connector_name


def desired_entries(connectors: tuple[ConnectorConfig, ...], msps: tuple[MspConfig, ...] = ()) -> dict[str, dict]:
    """The beat entries the config asks for, in Celery's ``beat_schedule`` form: each connector's full sync, and
    its incremental refresh unless ``events = false``; each MSP table's discovery."""
    from celery.schedules import schedule

    def every(interval: str):
        return schedule(parse_duration(interval).total_seconds())

    entries = {entry_name(c.name): _entry(TaskName.SYNC_CONNECTOR, c.schedule, c.name, trigger=Trigger.SCHEDULE)
               for c in connectors}
    entries.update({EVENTS_PREFIX + c.name: _entry(TaskName.SYNC_EVENTS, every(c.events_interval), c.name)
                    for c in connectors if c.events})
    entries.update({MSP_PREFIX + m.name: _entry(TaskName.MSP_DISCOVER, every(m.discover_interval), m.name)
                    for m in msps})
    return entries


def _entry(task: TaskName, schedule, name: str, **kwargs) -> dict:
    """One entry. A discovery of an interval schedule still queued when the next is due is dropped (``expires``):
    the next does the same work. A sync trigger or refresh is not: beat sends none while one of the entry waits
    (``worker.pending_triggers``), so a busy fleet neither piles them up nor drops the same ones every round."""
    run_every = getattr(schedule, "run_every", None)
    expires = {"expires": run_every.total_seconds()} if run_every is not None and task not in MARKED_TASKS else {}
    return {"task": task, "schedule": schedule, "args": (name,), "kwargs": kwargs,
            "options": {"queue": task.queue, **expires}}


def announce_discovery(broker_url: str) -> None:
    """Tell beat that the discovered organisations changed (``DISCOVERY_CHANGED_KEY``)."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        client.incr(DISCOVERY_CHANGED_KEY)
    finally:
        client.close()


def redbeat_on_broker(app) -> None:
    """RedBeat keeps its entries in the broker's Redis. Set in the processes that use RedBeat (beat, ``status``)
    rather than in the app's settings: a worker answers ``inspect conf`` (Flower's worker page) with its
    settings, which Celery censors for ``broker_url`` but not for ``redbeat_redis_url``."""
    app.conf.redbeat_redis_url = app.conf.broker_url


def next_syncs(app, names: list[str]) -> dict[str, str | None]:
    """When beat will next trigger each connector (ISO time), from its entry in Redis: the schedule's next time
    after the entry's last trigger (``next_run_at``); None for a connector beat has no entry for."""
    redbeat_on_broker(app)
    now = datetime.now(timezone.utc)
    stored = stored_entries(app, [entry_name(name) for name in names])
    out: dict[str, str | None] = {}
    for name in names:
        entry = stored[entry_name(name)]
        due = next_run_at(entry.schedule, entry.last_run_at, now) if entry is not None else None
        out[name] = due.isoformat() if due is not None else None
    return out


def stored_entries(app, names: list[str]) -> dict[str, RedBeatSchedulerEntry | None]:
    """``entry name -> its entry in Redis`` (None: no entry), read in one round trip whatever their number: beat
    reads every connector's entry each ``config_reload_interval`` and ``status`` reads them all, so one round
    trip an entry (RedBeat's ``from_key``) would grow with the organisations behind an MSP key. Decoded as
    ``from_key`` does."""
    ensure_conf(app)
    if not names:
        return {}
    with get_redis(app).pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(RedBeatSchedulerEntry.generate_key(app, name), "definition", "meta")
        rows = pipe.execute()
    return {name: _decoded_entry(app, definition, meta) for name, (definition, meta) in zip(names, rows, strict=True)}


def _decoded_entry(app, definition: bytes | None, meta: bytes | None) -> RedBeatSchedulerEntry | None:
    if not definition:
        return None
    fields = RedBeatSchedulerEntry.decode_definition(definition)
    decoded_meta = RedBeatSchedulerEntry.decode_meta(meta)
    fields.update(decoded_meta)
    entry = RedBeatSchedulerEntry(app=app, **fields)
    entry.last_run_at = decoded_meta["last_run_at"]  # ScheduleEntry sets "now" when given none
    return entry


def next_run_at(schedule, last_run_at: datetime | None, now: datetime) -> datetime | None:
    """The time ``schedule`` is next due after a trigger at ``last_run_at``: last trigger + interval, or the
    cron's next time. Never triggered: due ``now`` (beat sends a new entry at its next tick). A time in the past
    means beat is behind (or not running). RedBeat's ``due_at`` is not this: it adds the time *remaining* to the
    last trigger, so it moves backwards as the clock runs.

    The schedule is asked with its clock held at ``now``, so the answer is the same on every call."""
    if last_run_at is None:
        return now
    frozen = copy.copy(schedule)
    frozen.nowfun = lambda: now
    remaining = frozen.remaining_estimate(last_run_at)
    return None if remaining is None else now + remaining


#: Seconds beat waits before it tries again when the broker's Redis does not answer or lost beat's lock.
BROKER_RETRY_S = 5.0
#: What a broker restart or a network blip raises from redis-py (a Redis still loading its data answers BUSY
#: LOADING; kombu's own connection errors are caught by Celery's sending).
BROKER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)


def last_triggers(names: list[str]) -> dict[str, datetime]:
    """``entry name -> when its task last ran``, from the database's runs: what an entry wiped from Redis (a broker
    restarted without persistence) is rebuilt with, so that a schedule survives the wipe instead of firing every
    connector at once. Best effort: an unreadable database gives nothing (those entries are due now, as new)."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from models.tables import Connector, SyncRun

    wanted = {name: name.split(":", 1) for name in names if name.startswith((ENTRY_PREFIX, EVENTS_PREFIX))}
    if not wanted:
        return {}
    connectors = {connector for _, connector in wanted.values()}
    events = col(SyncRun.trigger) == Trigger.EVENTS
    try:
        with runtime.engine().connect() as connection:
            rows = connection.execute(
                select(col(Connector.name), events, func.max(col(SyncRun.started_at)))
                .join(Connector, col(Connector.id) == SyncRun.connector_id)
                .where(col(Connector.name).in_(connectors))
                .group_by(col(Connector.name), events)).all()
    except Exception as exc:  # noqa: BLE001  (beat must go on without the database)
        log.warning("beat: could not read the last runs to rebuild the schedule: %s", exc)
        return {}
    last = {(EVENTS_PREFIX if is_events else ENTRY_PREFIX) + connector: started
            for connector, is_events, started in rows if started is not None}
    return {name: last[name] for name in wanted if name in last}


class ConnectorScheduler(RedBeatScheduler):
    """RedBeat, plus reconciliation of connector entries with the config file."""

    def __init__(self, *args, **kwargs) -> None:
        self._next_reload = 0.0
        self._discovery_seen: bytes | None = None
        self._set_up = False  # setup_schedule reached Redis
        redbeat_on_broker(kwargs.get("app") or args[0])
        super().__init__(*args, **kwargs)

    @property
    def _known_key(self) -> str:
        return self.app.redbeat_conf.key_prefix + "connectors"

    def setup_schedule(self) -> None:
        """RedBeat's static entries and the connectors' in Redis; a broker that does not answer at start (beat
        started during its restart) leaves that to the first tick that reaches it, rather than ending beat."""
        try:
            super().setup_schedule()
            self.reconcile()
            self._set_up = True
        except BROKER_ERRORS as exc:
            self._set_up = False
            log.warning("beat: the broker's Redis does not answer at start (%s); setting the schedule up once it "
                        "does", exc)

    def reconcile(self) -> None:
        """Make the Redis entries match the connectors and MSP tables of the settings (the discovered connectors
        read now, not the process's cached view)."""
        try:
            settings = runtime.settings(fresh=True)
        except ConfigError as exc:
            log.error("beat: config file has errors, keeping the current schedule: %s", exc)
            return
        self._reload_every = parse_duration(settings.file.sync.config_reload_interval).total_seconds()
        self._restore_fixed_entries()
        wanted = desired_entries(settings.connectors, settings.file.msp)
        client = get_redis(self.app)
        known = {k.decode() if isinstance(k, bytes) else k for k in client.smembers(self._known_key)}
        if not settings.discovered_known:  # the discovered organisations are unknown now, not gone
            log.warning("beat: discovered connectors unreadable, removing no schedule until they are read")
        for name in (known - set(wanted)) if settings.discovered_known else ():
            RedBeatSchedulerEntry(name, app=self.app).delete()
            client.srem(self._known_key, name)
            log.info("beat: removed schedule %s", name)
        stored = stored_entries(self.app, list(wanted))
        rebuilt = last_triggers([name for name, current in stored.items() if current is None])
        for name, spec in wanted.items():
            current = stored[name]
            if (current is not None and current.schedule == spec["schedule"] and tuple(current.args) == spec["args"]
                    and dict(current.options or {}) == spec["options"]):
                continue
            entry = RedBeatSchedulerEntry(name, spec["task"], spec["schedule"], spec["args"], spec["kwargs"],
                                          options=spec["options"], app=self.app)
            # A new connector is due now (Celery would otherwise wait one interval); a changed one keeps its
            # last run, so editing a schedule does not trigger an extra sync; one wiped from Redis with the
            # broker's data takes its last run from the database.
            entry.last_run_at = current.last_run_at if current is not None else rebuilt.get(name)
            entry.save()
            client.sadd(self._known_key, name)
            log.info("beat: %s schedule %s (%s)", "changed" if current else "added", name, spec["schedule"])

    def _restore_fixed_entries(self) -> None:
        """The fixed entries (reaper, relay, expiry, rendering) stored again when Redis lost them (restarted
        without its data): RedBeat stores them only at start, and without them no reaper or relay would run until
        beat restarts. Their last runs went with them: an interval entry is due at once (the reaper is what finds
        the messages the wipe took), a cron entry at its next time."""
        fixed = stored_entries(self.app, list(self.app.redbeat_conf.schedule))
        missing = [name for name, entry in fixed.items() if entry is None]
        if not missing:
            return
        super().setup_schedule()
        for entry in stored_entries(self.app, missing).values():
            if entry is not None and isinstance(entry.schedule, celery_schedule) and not isinstance(
                    entry.schedule, crontab):
                entry.reschedule(last_run_at=datetime.now(timezone.utc) - entry.schedule.run_every)
        log.warning("beat: fixed entries missing from Redis (restarted without its data?), stored again: %s",
                    ", ".join(sorted(missing)))

    def _discovery_changed(self) -> bool:
        seen = get_redis(self.app).get(DISCOVERY_CHANGED_KEY)
        changed, self._discovery_seen = seen != self._discovery_seen, seen
        return changed

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        """Send a due entry; a sync trigger or refresh only if none of that entry waits in the queue, carrying the
        token of its mark (``worker.pending_triggers``). Not sent, the entry still moves on to its next time; a send
        that fails takes its mark back."""
        if entry.task not in MARKED_TASKS or not entry.args:
            return super().apply_async(entry, producer, advance, **kwargs)
        client = get_redis(self.app)
        token = pending_triggers.claim(client, entry.name, pending_triggers.ttl_s(entry.schedule))
        if token is None:
            log.info("beat: %s not sent: the last one still waits in the queue", entry.name)
            if advance:
                self.reserve(entry)
            return None
        stored_kwargs, entry.kwargs = entry.kwargs, {**entry.kwargs, "trigger_token": token}
        try:
            return super().apply_async(entry, producer, advance, **kwargs)
        except BaseException:
            try:
                pending_triggers.unclaim(client, entry.name, token)
            except BROKER_ERRORS:
                pass  # the mark expires
            raise
        finally:
            entry.kwargs = stored_kwargs  # the token is this send's, not the entry's

    def tick(self, *args, **kwargs):
        """One round: reconcile when due, then RedBeat's (extend the lock, send what is due). A broker that does
        not answer (restarting, a network blip) or that lost the lock (restarted without persistence) is ridden
        out: beat logs it, takes its lock again and tries again in ``BROKER_RETRY_S``, its schedule kept."""
        try:
            if not self._set_up:
                self.setup_schedule()
                if not self._set_up:
                    return BROKER_RETRY_S
            if self.lock_key and self.lock is None:  # lost with a broker that restarted: take it again
                acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=self))
            discovered = self._discovery_changed()
            if discovered or time.monotonic() >= self._next_reload:
                self.reconcile()
                self._next_reload = time.monotonic() + getattr(self, "_reload_every", 30.0)
            return super().tick(*args, **kwargs)
        except LockNotOwnedError:
            log.warning("beat: its lock is gone from Redis (restarted without persistence?); taking it again")
            self.lock = None
            self._next_reload = 0.0  # the schedule likely went with it: reconcile (and restore) at the next tick
            return BROKER_RETRY_S
        except BROKER_ERRORS as exc:
            log.warning("beat: the broker's Redis does not answer (%s); schedule kept, trying again in %gs", exc,
                        BROKER_RETRY_S)
            return BROKER_RETRY_S
