"""The MSP phase of a bench run: one multi-tenant key reaching ``--msp-orgs`` small organisations (50 by default),
discovered by beat (an ``[[msp]]`` table, docs/msp.md) and synced by the bench's sync workers under one request
budget for the key, with a full-sync interval short enough that the fleet runs saturated (its throughput is then
its capacity): how long discovery takes, how many syncs an hour the fleet completes and what they request, whether
the budget holds, and whether any organisation starves another.

``run.py`` starts the processes (``fleet.started`` with an ``MspFleet``); ``measure`` does the rest: R_min of every
org, beat started, discovery waited for (``wait_discovered``), the window watched (``watch``), beat stopped and
the backlog drained (``drain``), the runs read back (``read_runs``) and turned into figures (``figures``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import redis
from sqlalchemy import func, select, text

from bench import fleet as fleet_mod
from bench.events import epoch, percentile
from bench.fleet import KEY_ENV, ROOT, SYNC_TABLE, Fleet, Simulator, Stack
from bench.tenant import r_min_parts
from models.states import ACTIVE_RUN_STATUSES, RunStatus, Trigger
from models.tables import Connector, MspListing, MspOrganization, SyncPart, SyncRun
from worker.beat import entry_name
from worker.names import Queue, queue_lists

#: The ``[[msp]]`` table's name: the discovered connectors are ``msp-<slug of the org's name>``.
MSP_NAME = "msp"
#: How often beat lists the organisations: each listing is one request (fewer than 100 organisations).
DISCOVER_INTERVAL = "1m"
#: Beat's set of the entries it manages (``worker.beat.ConnectorScheduler._known_key``: worker.celery_app's
#: ``redbeat_key_prefix`` and "connectors"): an org is scheduled once its ``sync:<connector>`` is in it.
BEAT_ENTRIES_KEY = "jumpsync:beat:connectors"
#: The hash of the messages workers hold unacknowledged.
UNACKED_KEY = "unacked"
POLL_S = 0.25
QUEUE_SAMPLE_S = 5.0
PROGRESS_LOG_S = 60.0
DISCOVERY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 120.0
#: Starvation: an org is starved when it had no succeeded sync in the window, or went longer than this many fair
#: periods without one (the fair period: how often each org syncs when the fleet's capacity is shared equally).
STARVED_PERIODS = 2.0
#: Fairness of the per-org sync counts: Jain's index, 1 = all equal, 1/n = one org had them all.
JAIN_TARGET = 0.9
#: The fleet ran saturated if it completed less than this share of the syncs beat asked for.
SATURATED_SHARE = 0.95


@dataclass(frozen=True)
class MspSettings:
    """The phase's knobs, recorded with its figures."""

    orgs: int
    window_s: float
    latency_ms: float      # the simulator's, on every /api request
    shared_max_in_flight: int
    rate_limit: float      # requests per second for the key; 0: none
    interval: str          # every org's full-sync interval ([msp.connector])
    max_in_flight: int     # each sync part's own limit ([msp.connector])
    discover_interval: str = DISCOVER_INTERVAL
    events_interval: str | None = None  # each org's events refresh ([msp.connector]); None: events off


def msp_config(sim_url: str, settings: MspSettings) -> str:
    """The config file: one ``[[msp]]`` table and no ``[[connectors]]`` (every connector is discovered); events
    off unless ``events_interval`` (then beat also sends each org's refresh, beside its full syncs)."""
    rate = f"rate_limit = {settings.rate_limit:g}\n" if settings.rate_limit else ""
    events = (f'events_interval = "{settings.events_interval}"\n' if settings.events_interval
              else "events = false\n")
    return (SYNC_TABLE + "\n"
            f'[[msp]]\nname = "{MSP_NAME}"\nbase_url = "{sim_url}"\napi_key_env = "{KEY_ENV}"\n'
            f'discover_interval = "{settings.discover_interval}"\n'
            f"shared_max_in_flight = {settings.shared_max_in_flight}\n{rate}\n"
            f'[msp.connector]\ninterval = "{settings.interval}"\n{events}'
            f"max_in_flight = {settings.max_in_flight}\n")


class MspFleet(Fleet):
    """The bench's fleet with the MSP phase's config instead of the ``bench`` connectors."""

    def __init__(self, directory, broker_url: str, database_url: str, sim: Simulator, settings: MspSettings) -> None:
        self.msp = settings
        super().__init__(directory, broker_url, database_url, sim, settings.max_in_flight)

    def use_config(self, events_interval: str | None = None) -> None:
        self.config_path.write_text(msp_config(self.sim_url, self.msp))


# --- what happens, as it happens -----------------------------------------------------------------------------

def org_r_min(sim: Simulator) -> dict[str, int]:
    """R_min of every org the simulator serves (org id -> fewest requests of a full sync), from its dump."""
    return {org: sum(r_min_parts(sim.sim("GET", "/_sim/tenant", params={"org": org}).json()).values())
            for org in sim.orgs()["orgs"]}


@dataclass
class Discovery:
    """When each step of the discovery happened (epoch s): beat started; the key's first listing recorded ok;
    every org given a connector; beat holding every connector's sync entry (each due at once)."""

    beat_started: float
    listed: float | None = None
    created: float | None = None
    scheduled: float | None = None
    connectors: dict[str, str] = field(default_factory=dict)  # connector -> org id


def _beat_entries(client: redis.Redis) -> set[str]:
    return {name.decode() for name in client.smembers(BEAT_ENTRIES_KEY)}


def wait_discovered(engine, broker_url: str, orgs: int, discovery: Discovery,
                    timeout: float = DISCOVERY_TIMEOUT_S) -> Discovery:
    """Poll the database and beat's entries until all ``orgs`` are discovered and scheduled, recording when each
    step was first seen (within ``POLL_S``)."""
    client = redis.Redis.from_url(broker_url)
    organizations = MspOrganization.__table__.c
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        with engine.connect() as connection:
            outcome = connection.execute(select(MspListing.__table__.c.outcome).where(
                MspListing.__table__.c.msp == MSP_NAME)).scalar()
            rows = connection.execute(select(organizations.connector, organizations.org_id).where(
                organizations.msp == MSP_NAME, organizations.removed_at.is_(None))).all()
        if discovery.listed is None and outcome == "ok":
            discovery.listed = now
        discovery.connectors = {row.connector: row.org_id for row in rows}
        if discovery.created is None and len(rows) >= orgs:
            discovery.created = now
        if discovery.created is not None and {entry_name(c) for c in discovery.connectors} <= _beat_entries(client):
            discovery.scheduled = now
            return discovery
        time.sleep(POLL_S)
    raise TimeoutError(f"{len(discovery.connectors)} of {orgs} organisations discovered and scheduled within "
                       f"{timeout:.0f}s (see beat.log and the workers' logs)")


def queue_length(client: redis.Redis) -> int:
    """Messages waiting in the sync queue, all priority steps."""
    return sum(client.llen(key) for key in queue_lists(Queue.SYNC))


@dataclass
class Window:
    """The measured window: its bounds (epoch s), the simulator's counters at both ends, CPU seconds by component
    and the machine's busy CPU seconds during it, and the sync queue's length every ``QUEUE_SAMPLE_S``."""

    start: float
    end: float
    stats_start: dict
    stats_end: dict
    cpu_s: dict[str, float]
    busy_s: float
    queue: list[tuple[float, int]]  # (seconds into the window, messages waiting)
    scripts: int  # Lua scripts Redis ran: the budget's decisions (a slot, a token), each a round trip


def scripts_run(client: redis.Redis) -> int:
    """Lua scripts Redis has run (``EVALSHA``, then ``EVAL``): ``jumpcloud.budget`` takes every slot and every
    token with one; nothing else in the fleet runs one more than every few seconds (beat's lock)."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def watch(stack: Stack, start: float, window_s: float, progress: Callable[[float], None]) -> Window:
    """Let the fleet run from ``start`` (epoch s) for ``window_s``: sample the queue, call ``progress`` with the
    seconds so far every ``PROGRESS_LOG_S``, and read the counters and CPU at both ends."""
    components = {"sync workers": [w.pid for w in stack.fleet.workers if w.queues == "sync"],
                  "simulator": [stack.sim.proc.pid], "beat": [stack.fleet.beat.pid],
                  **{name: [pid] for name, pid in stack.servers.items()}}
    client = redis.Redis.from_url(stack.fleet.broker_url)
    stats, cpu, busy = stack.sim.stats(), fleet_mod.cpu_by_component(components), fleet_mod.machine_busy_seconds()
    scripts = scripts_run(client)
    queue: list[tuple[float, int]] = []
    end, next_progress = start + window_s, start + PROGRESS_LOG_S
    while (now := time.time()) < end:
        queue.append((round(now - start, 1), queue_length(client)))
        if now >= next_progress:
            progress(now - start)
            next_progress += PROGRESS_LOG_S
        time.sleep(max(0.0, min(QUEUE_SAMPLE_S, end - time.time())))
    spent = fleet_mod.cpu_by_component(components)
    return Window(start, time.time(), stats, stack.sim.stats(),
                  {name: round(spent[name] - cpu[name], 1) for name in components},
                  round(fleet_mod.machine_busy_seconds() - busy, 1), queue, scripts_run(client) - scripts)


def drain(engine, broker_url: str, timeout: float = DRAIN_TIMEOUT_S) -> float | None:
    """Once beat has stopped: wait until the queue is empty, no worker holds a message and no run is active, so
    that every request the simulator counted belongs to a run that has ended. Seconds it took, or None if the
    backlog was not worked off within ``timeout``."""
    client = redis.Redis.from_url(broker_url)
    runs = SyncRun.__table__.c
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with engine.connect() as connection:
            active = connection.execute(select(func.count()).where(runs.status.in_(ACTIVE_RUN_STATUSES))).scalar()
        if not active and not queue_length(client) and not client.hlen(UNACKED_KEY):
            return round(time.monotonic() - started, 1)
        time.sleep(1.0)
    return None


@dataclass(frozen=True)
class Run:
    """One sync run of a discovered connector (epoch s), with the requests its parts recorded."""

    connector: str
    status: str
    trigger: str
    started: float
    finished: float | None
    requests: int


def read_runs(engine, connectors: set[str]) -> list[Run]:
    runs, parts, table = SyncRun.__table__.c, SyncPart.__table__.c, Connector.__table__.c
    query = (select(table.name, runs.status, runs.trigger, runs.started_at, runs.finished_at,
                    func.coalesce(func.sum(parts.requests), 0).label("requests"))
             .join(Connector.__table__, table.id == runs.connector_id)
             .outerjoin(SyncPart.__table__, parts.run_id == runs.id)
             .group_by(runs.id, table.name, runs.status, runs.trigger, runs.started_at, runs.finished_at)
             .order_by(runs.id))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [Run(row.name, row.status, row.trigger, epoch(row.started_at), epoch(row.finished_at), int(row.requests))
            for row in rows if row.name in connectors]


def measure(stack: Stack, settings: MspSettings, log: Callable[[str], None]) -> dict:
    """The phase, on a started stack whose config is ``settings``'s: the figures (``figures``)."""
    sim, fleet, engine = stack.sim, stack.fleet, stack.engine
    r_min_by_org = org_r_min(sim)
    sim.reset_stats()  # the counts below are the phase's: listings and syncs
    discovery = Discovery(beat_started=time.time())
    fleet.start_beat()
    try:
        wait_discovered(engine, fleet.broker_url, settings.orgs, discovery)
        log(f"msp: {len(discovery.connectors)} organisations listed after "
            f"{discovery.listed - discovery.beat_started:.1f}s, all scheduled after "
            f"{discovery.scheduled - discovery.beat_started:.1f}s; watching {settings.window_s:.0f}s")

        def progress(seconds: float) -> None:
            done = [r for r in read_runs(engine, set(discovery.connectors)) if r.status == RunStatus.SUCCEEDED]
            log(f"msp: {seconds:.0f}s: {len(done)} syncs succeeded, {len({r.connector for r in done})} "
                f"organisations synced at least once")

        window = watch(stack, discovery.scheduled, settings.window_s, progress)
    finally:
        fleet.stop_beat()
    drained = drain(engine, fleet.broker_url)
    runs = read_runs(engine, set(discovery.connectors))
    r_min = {name: r_min_by_org[org] for name, org in discovery.connectors.items()}
    out = figures(runs, discovery, window, settings, r_min, sim.stats(), drained)
    out["commands"] = {name: command_seconds(fleet, *args) for name, args in COMMANDS.items()}
    log(f"msp: commands (best of 3): {out['commands']}")
    out["database_mb"] = database_mb(engine)
    out["beat"] = {**beat_reconcile(fleet), "cpu_s": window.cpu_s["beat"],
                   "cpu_share": round(window.cpu_s["beat"] / (window.end - window.start), 4)}
    log(f"msp: beat: {out['beat']}")
    return out


def database_mb(engine) -> float:
    """The database's size once the phase ends: PostgreSQL's ``pg_database_size``, SQLite's file and its WAL."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    else:
        database = Path(engine.url.database)
        size = sum(f.stat().st_size for f in (database, database.with_name(database.name + "-wal")) if f.exists())
    return round(size / 2**20, 1)


def beat_reconcile(fleet: Fleet) -> dict:
    """Beat's reconcile of every entry, timed by ``bench.beat_probe`` with the fleet's settings."""
    done = subprocess.run([sys.executable, "-m", "bench.beat_probe"], env=fleet.env, cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


#: The operator's commands timed once the phase ends, with every organisation's runs in the database; ``--help``
#: is the start-up they all pay.
COMMANDS = {"status": ("status", "--json"), "msp list": ("msp", "list", "--json"), "start-up": ("--help",)}
#: The most an answer may take beyond the start-up (issue 28).
COMMAND_TARGET_S = 1.0


def command_seconds(fleet: Fleet, *args: str, runs: int = 3) -> float:
    """The best wall time of ``python -m cli ARGS`` with the fleet's settings, as an operator runs it."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli", *args], env=fleet.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=300)
        best = min(best, time.perf_counter() - started)
    return round(best, 2)


# --- the figures ---------------------------------------------------------------------------------------------

def jain(values: list[int]) -> float | None:
    """Jain's fairness index of the per-org counts: (Σx)² / (n·Σx²), 1 when all are equal."""
    squares = sum(v * v for v in values)
    return round(sum(values) ** 2 / (len(values) * squares), 3) if squares else None


def longest_gaps(succeeded: list[Run], connectors: list[str], end: float) -> dict[str, float | None]:
    """Each org's longest stretch without a new succeeded sync, from its first one to ``end``: between two
    consecutive syncs' ends, or from its last to ``end`` (so an org that stops being synced shows). None: never."""
    gaps: dict[str, float | None] = {}
    for name in connectors:
        ends = sorted(r.finished for r in succeeded if r.connector == name and r.finished <= end)
        gaps[name] = round(max(b - a for a, b in pairwise([*ends, end])), 1) if ends else None
    return gaps


def _spread(values: list[float]) -> dict:
    return {"min": min(values, default=None), "p50": percentile(sorted(values), 50),
            "p95": percentile(sorted(values), 95), "max": max(values, default=None)}


def _timeline(discovery: Discovery, first: dict[str, float]) -> dict:
    """Seconds from beat's start: discovery's steps, and every org's first succeeded sync (p50, last)."""
    def since(t: float | None) -> float | None:
        return round(t - discovery.beat_started, 1) if t is not None else None

    firsts = sorted(first.values())
    return {"listed_s": since(discovery.listed), "connectors_s": since(discovery.created),
            "scheduled_s": since(discovery.scheduled),
            "first_sync_p50_s": since(statistics.median(firsts)) if firsts else None,
            "all_first_synced_s": since(firsts[-1]) if len(first) == len(discovery.connectors) else None}


def _throughput(succeeded: list[Run], window: Window, all_first: float | None, demand_per_hour: float,
                skipped: int) -> dict:
    """Succeeded syncs that ended in the window, an hour's worth; the same after every org's first sync (the
    steady state: no-change re-syncs), when the window has at least a minute of it, counting each sync by the
    share of its run that fell after that moment (a sync under way then did part of its work before); and
    whether the fleet ran saturated (demand above what it did, or a trigger finding its org still syncing), so
    that this is its capacity rather than the demand."""
    length = window.end - window.start
    ended = [r for r in succeeded if window.start <= r.finished <= window.end]
    steady_s = window.end - all_first if all_first is not None else 0.0
    steady = sum(_share_after(r, all_first) for r in ended) if steady_s >= 60 else 0.0
    per_hour = round(len(ended) * 3600 / length)
    return {"window_s": round(length, 1), "succeeded": len(ended), "per_hour": per_hour,
            "steady_s": round(steady_s, 1) if steady_s >= 60 else None, "steady_succeeded": round(steady, 1),
            "steady_per_hour": round(steady * 3600 / steady_s) if steady_s >= 60 else None,
            "demand_per_hour": round(demand_per_hour),
            "saturated": skipped > 0 or per_hour < SATURATED_SHARE * demand_per_hour}


def _share_after(run: Run, moment: float) -> float:
    """The share of ``run``'s time (start to end) that fell after ``moment``."""
    if run.started >= moment:
        return 1.0
    return max(0.0, run.finished - moment) / max(run.finished - run.started, 1e-9)


def _fairness(succeeded: list[Run], connectors: list[str], window: Window, fair_period_s: float) -> dict:
    """Per-org succeeded syncs in the window (spread, Jain's index, the worst org against the mean), each org's
    longest gap against the fair period, and the starved orgs."""
    counts = Counter(r.connector for r in succeeded if window.start <= r.finished <= window.end)
    per_org = [counts.get(name, 0) for name in connectors]
    mean = statistics.mean(per_org) if per_org else 0
    gaps = longest_gaps(succeeded, connectors, window.end)
    worst_gap = max(gaps, key=lambda name: gaps[name] if gaps[name] is not None else float("inf"))
    starved = sorted(name for name in connectors
                     if not counts.get(name) or gaps[name] > STARVED_PERIODS * fair_period_s)
    return {"per_org": {"min": min(per_org), "p50": statistics.median(per_org), "max": max(per_org)},
            "jain": jain(per_org), "worst_vs_mean": round(min(per_org) / mean, 2) if mean else None,
            "fair_period_s": round(fair_period_s, 1), "max_gap_s": gaps[worst_gap], "max_gap_org": worst_gap,
            "starved": starved, "starved_threshold_s": round(STARVED_PERIODS * fair_period_s, 1),
            "by_org": {name: {"syncs": counts.get(name, 0), "max_gap_s": gaps[name]} for name in connectors}}


def _requests(succeeded: list[Run], runs: list[Run], r_min: dict[str, int], window: Window, stats: dict,
              drained: float | None, refreshing: bool = False) -> dict:
    """Requests of a sync (its parts' count) against its org's R_min; the simulator's count in the window; and,
    with every run ended, the simulator's count of the phase against the runs' and the listings'."""
    per_sync = [r.requests for r in succeeded]
    listings = sum(n for route, n in stats["by_route"].items() if route.endswith(" /api/organizations"))
    in_window = window.stats_end["requests"] - window.stats_start["requests"]
    recorded = sum(r.requests for r in runs)
    return {"per_sync": _spread(per_sync), "at_r_min": sum(r.requests == r_min[r.connector] for r in succeeded),
            "r_min_p50": statistics.median(r_min.values()), "window": in_window,
            "per_second": round(in_window / (window.end - window.start), 1),
            "budget_scripts_per_request": round(window.scripts / in_window, 1) if in_window else None,
            "phase_sim": stats["requests"], "phase_runs": recorded, "phase_listings": listings,
            # A refresh that wrote nothing records no run: with refreshes on, the count cannot be checked.
            "phase_matches": ((stats["requests"] == recorded + listings) if drained is not None and not refreshing
                              else None),
            "by_status": stats["by_status"]}


def _runs(runs: list[Run], window: Window) -> dict:
    """Runs started in the window by status (``skipped``: beat triggered an org whose previous sync was still
    active; expected while saturated) and by trigger."""
    started = [r for r in runs if window.start <= r.started <= window.end]
    return {"by_status": dict(Counter(r.status for r in started)), "by_trigger": dict(Counter(r.trigger for r in started)),
            "skipped": sum(r.status == RunStatus.SKIPPED for r in started),
            "not_succeeded": sum(r.status in (RunStatus.FAILED, RunStatus.PARTIAL) for r in started)}


def _budget_bound(settings: MspSettings, requests_per_sync: float | None) -> int | None:
    """Syncs an hour the shared budget would allow if nothing else limited them: ``shared_max_in_flight``
    requests always open, each taking the latency (and no more than ``rate_limit`` a second)."""
    if not requests_per_sync or not settings.latency_ms:
        return None
    per_second = settings.shared_max_in_flight * 1000 / settings.latency_ms
    if settings.rate_limit:
        per_second = min(per_second, settings.rate_limit)
    return round(per_second * 3600 / requests_per_sync)


def _refreshes(settings: MspSettings, window: Window) -> dict | None:
    """With ``events_interval``: the Directory Insights requests in the window (each refresh reads at least one
    events page; one that wrote nothing records no run) and their rate a minute."""
    if not settings.events_interval:
        return None

    def insights(stats: dict) -> int:
        return sum(n for route, n in stats.get("by_route", {}).items() if "/insights/" in route)

    requests = insights(window.stats_end) - insights(window.stats_start)
    return {"insights_requests": requests, "per_minute": round(requests * 60 / (window.end - window.start), 1)}


def figures(runs: list[Run], discovery: Discovery, window: Window, settings: MspSettings, r_min: dict[str, int],
            stats: dict, drained: float | None) -> dict:
    """Everything the phase reports, from the runs read back, the discovery's timeline, the window's counters and
    the simulator's counters of the whole phase (``stats``, read after ``drain``)."""
    from config.settings import parse_duration

    connectors = sorted(discovery.connectors)
    every_run, runs = runs, [r for r in runs if r.trigger != Trigger.EVENTS]  # the full syncs
    succeeded = [r for r in runs if r.status == RunStatus.SUCCEEDED and r.finished is not None]
    first = {}
    for run in sorted(succeeded, key=lambda r: r.finished):
        first.setdefault(run.connector, run.finished)
    timeline = _timeline(discovery, first)
    all_first = max(first.values()) if len(first) == len(connectors) else None
    interval_s = parse_duration(settings.interval).total_seconds()
    run_counts = _runs(runs, window)
    throughput = _throughput(succeeded, window, all_first, len(connectors) * 3600 / interval_s,
                             run_counts["skipped"])
    rate = throughput["steady_per_hour"] or throughput["per_hour"]
    # Each org's turn when the fleet's capacity is shared equally, or its interval when capacity exceeds demand;
    # with no sync at all, every org is starved.
    fair_period = max(interval_s, len(connectors) * 3600 / rate) if rate else 0.0
    in_window = [r for r in succeeded if window.start <= r.finished <= window.end]
    requests = _requests(in_window, every_run, r_min, window, stats, drained, bool(settings.events_interval))
    length = window.end - window.start
    return {
        "settings": asdict(settings), "orgs": len(connectors), "timeline": timeline, "throughput": throughput,
        "fairness": _fairness(succeeded, connectors, window, fair_period), "requests": requests,
        "budget": {"shared_max_in_flight": settings.shared_max_in_flight, "rate_limit": settings.rate_limit,
                   "sim_max_in_flight": stats["max_in_flight"], "sim_max_per_second": stats["max_per_second"],
                   # What the budget alone would allow: every slot busy, each request taking the latency.
                   "bound_per_hour": _budget_bound(settings, requests["per_sync"]["p50"])},
        "runs": run_counts,
        "refreshes": _refreshes(settings, window),
        "wall_s": _spread([round(r.finished - r.started, 2) for r in in_window]),
        "queue": {"max": max((n for _, n in window.queue), default=None),
                  "end": window.queue[-1][1] if window.queue else None, "samples": window.queue},
        "cpu_s": window.cpu_s, "machine_busy_cores": round(window.busy_s / length, 2),
        # What the rest of the machine took meanwhile (other users' work): high, and the window was shared.
        "other_cores": round(max(0.0, window.busy_s - sum(window.cpu_s.values())) / length, 2),
        "drained_after_s": drained,
    }


__all__ = ["MSP_NAME", "MspFleet", "MspSettings", "figures", "jain", "longest_gaps", "measure", "msp_config"]
