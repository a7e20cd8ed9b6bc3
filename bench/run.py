"""``make bench``: syncs of named tenant profiles through a real worker fleet, against the simulator with a
per-request latency, measured against the lower bounds the API and the database allow.

    .venv/bin/python -m bench.run                                   # small,large at 20 ms on SQLite
    .venv/bin/python -m bench.run --profiles xl --database postgres
    make bench BENCH_ARGS="--profiles large --py-spy"

See bench/README.md for what is measured and how; docs/benchmarks.md shows the latest figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import fleet as fleet_mod
from bench import report
from bench.fleet import CONNECTOR, LIMITED_CONNECTOR, Fleet, Sampler, Simulator
from bench.profiles import SYNC_TIMEOUT, describe
from bench.tenant import apply_change, r_min_parts, shape
from models.columns import iso
from models.read_records import PartRecord, RunRecord
from models.states import PartPhase, Trigger
from worker.names import TaskName

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "var" / "bench" / "runs"
#: At least this many rows in the upsert measurement, so that small's rate is not timer noise.
MIN_UPSERT_ROWS = 10_000
#: ... and at most this many, so that xl's measurement (8 passes) stays within minutes.
MAX_UPSERT_ROWS = 300_000
#: The incremental refresh's interval in the events phase: the latency targets are for the default, 1 minute.
EVENTS_INTERVAL = "1m"


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# --- the machine ---------------------------------------------------------------------------------------------

def machine(database: str, pg_url: str | None) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    info = {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "database": database,
    }
    redis = shutil.which("redis-server")
    if redis:
        info["redis"] = subprocess.run([redis, "--version"], capture_output=True, text=True).stdout.split(" v=")[-1].split()[0]
    if pg_url:
        import psycopg

        with psycopg.connect(pg_url) as conn:
            info["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
            info["postgres_settings"] = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                                         for name in ("fsync", "synchronous_commit", "shared_buffers")}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
        info["git"] = commit + ("+dirty" if dirty else "")
    except OSError:
        pass
    return info


def wait_quiet(max_wait: float, busy_share: float = 0.25, window: float = 3.0) -> dict:
    """Wait (at most ``max_wait`` s) until the machine's CPU is less than ``busy_share`` busy over ``window`` s:
    other work on a small machine (another test run, a build) would be measured as ours."""
    cores = len(os.sched_getaffinity(0))
    deadline = time.monotonic() + max_wait
    waited = 0.0
    while True:
        before = fleet_mod.machine_busy_seconds()
        time.sleep(window)
        share = (fleet_mod.machine_busy_seconds() - before) / (window * cores)
        if share < busy_share or time.monotonic() >= deadline:
            if share >= busy_share:
                log(f"the machine is still {share:.0%} busy after waiting {waited:.0f}s; measuring anyway")
            return {"busy_share": round(share, 2), "waited_s": round(waited, 1)}
        if not waited:
            log(f"the machine is {share:.0%} busy with other work; waiting up to {max_wait:.0f}s for it to settle")
        waited += window


# --- one sync ------------------------------------------------------------------------------------------------

def wait_run(engine, task_id: str, timeout: float) -> RunRecord:
    from models import queries

    run = queries.wait_for_run(engine, task_id, timeout)
    if run is None:
        seen = queries.run_by_task_id(engine, task_id)
        last_seen = {"status": str(seen.status), "started_at": iso(seen.started_at)} if seen else "not started"
        raise TimeoutError(f"the run of task {task_id} did not end within {timeout:.0f}s (last seen: {last_seen})")
    return run


def part_summary(part: PartRecord) -> dict:
    started, finished = part.started_at, part.finished_at
    counts = part.counts or {}
    grant_rows = sum(counts.get(k, 0) for k in ("grants_created", "grants_undeleted", "grants_deleted"))
    return {
        "name": part.name, "phase": part.phase, "status": part.status, "requests": part.requests,
        "seconds": round((finished - started).total_seconds(), 3) if started and finished else None,
        "started_at": iso(started), "finished_at": iso(finished),
        "rows_written": counts.get("rows_written", 0), "grant_rows": grant_rows,
        "resource_rows": counts.get("rows_written", 0) - grant_rows, "counts": counts,
    }


def run_sync(kind: str, fleet: Fleet, sim: Simulator, engine, timeout: float, profiler_dir: Path | None,
             servers: dict[str, int], connector: str = CONNECTOR) -> dict:
    dump = sim.dump()
    r_parts = r_min_parts(dump)
    sim.reset_stats()
    sampler = Sampler(fleet, sim, extra=servers).start()
    recorder = None
    if profiler_dir is not None:
        from bench.profiling import Recorder

        sync_pids = [w.pid for w in fleet.workers if w.queues == "sync"]
        recorder = Recorder(sync_pids, profiler_dir / f"pyspy-{kind}", root=("sync_part", "sync_finalize"))
        time.sleep(1.0)  # let py-spy attach before the sync starts
    sent = time.time()
    task = fleet.send(TaskName.SYNC_CONNECTOR, connector, trigger=Trigger.MANUAL)
    try:
        run = wait_run(engine, task.id, timeout)
    finally:
        observed = time.time()
        memory = sampler.stop()
        profile = recorder.stop() if recorder else None
    stats = sim.stats()
    started, finished = run.started_at, run.finished_at
    assert finished is not None  # wait_run returns an ended run
    parts = [part_summary(p) for p in run.parts]
    fetch = [p for p in parts if p["phase"] == PartPhase.FETCH]
    derive_ends = [p.finished_at for p in run.parts if p.phase != PartPhase.FETCH and p.finished_at]
    last_fetch_end = max((p.finished_at for p in run.parts if p.phase == PartPhase.FETCH and p.finished_at),
                         default=None)
    if last_fetch_end is not None:
        # Which phase the memory peak belongs to: the fetch parts, or the derived parts after them (sampled
        # VmRSS, so a spike shorter than the sampling interval can be missed; VmHWM above cannot).
        memory["pool_rss_fetch_mb"] = sampler.rss_between(started.timestamp(), last_fetch_end.timestamp())
        memory["pool_rss_derive_mb"] = sampler.rss_between(last_fetch_end.timestamp(), finished.timestamp() + 1)
    result = {
        "kind": kind, "run_id": run.id, "status": run.status, "error": run.error,
        "wall_s": round((finished - started).total_seconds(), 3),
        "send_to_start_s": round(started.timestamp() - sent, 3),
        "observed_after_s": round(observed - finished.timestamp(), 3),
        "requests": stats["requests"], "requests_by_part": {p["name"]: p["requests"] for p in fetch},
        "r_min": sum(r_parts.values()), "r_min_by_part": r_parts,
        "sim_by_status": stats["by_status"], "sim_by_route": stats["by_route"],
        "sim_max_in_flight": stats["max_in_flight"], "sim_max_per_second": stats.get("max_per_second"),
        "rows_written": sum(p["rows_written"] for p in parts),
        "resource_rows": sum(p["resource_rows"] for p in parts),
        "grant_rows": sum(p["grant_rows"] for p in parts),
        "parts": parts,
        "finalize_s": (round((max(derive_ends) - last_fetch_end).total_seconds(), 3)
                       if derive_ends and last_fetch_end else None),
        "tenant": shape(dump),
        "memory_cpu": memory,
    }
    if profile is not None:
        result["py_spy"] = profile
    # The run's end sends the rendering of the report and export (docs/access.md): waited for, so that it is
    # not measured as part of the next phase, and timed from the run's end.
    # Its memory is sampled apart (the peaks reset when the sampler starts): a pool process renders after the
    # parts it ran, and its target holds whatever ran in it before.
    render_sampler = Sampler(fleet, sim, extra=servers).start()
    try:
        rendered = wait_rendered(engine, connector, timeout)
    finally:
        render_memory = render_sampler.stop()
    result["rendered_after_s"] = round(rendered - finished.timestamp(), 2) if rendered else None
    result["render_pool_peak_rss_mb"] = max((w["pool_peak_rss_mb"] for name, w in render_memory["workers"].items()
                                             if name.startswith("sync")), default=None)
    return result


def wait_rendered(engine, connector: str, timeout: float) -> float | None:
    """When the connector's stored rendering became current (epoch seconds), or None if not within ``timeout``."""
    from access.snapshot_store import current
    from access.snapshots import renderer_version
    from models.queries import connector_id

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if current(connection, connector_id(connection, connector), renderer_version()) is not None:
                return time.time()
        time.sleep(0.1)
    return None


def add_bounds(sync: dict, latency_ms: float, in_flight: int, upsert: dict) -> None:
    """API bound (R_min x latency / in-flight), the per-part API bound, the database bound and the ratio."""
    latency = latency_ms / 1000
    sync["api_bound_s"] = round(sync["r_min"] * latency / in_flight, 3)
    sync["api_bound_per_part_s"] = round(max(sync["r_min_by_part"].values()) * latency / in_flight, 3)
    sync["db_bound_s"] = round(sync["resource_rows"] / upsert["resource"]["bare"]
                               + sync["grant_rows"] / upsert["grant"]["bare"], 3)
    bound = max(sync["api_bound_s"], sync["db_bound_s"])
    sync["bound_s"] = bound
    sync["ratio"] = round(sync["wall_s"] / bound, 2) if bound else None
    sync["rows_per_s"] = round(sync["rows_written"] / sync["wall_s"]) if sync["wall_s"] else None


# --- provisioning --------------------------------------------------------------------------------------------

def member_pairs(dump: dict, n: int, seed: int = 5) -> list[list[str]]:
    """n distinct (group id, user id) pairs where the user is not yet a member."""
    import random

    rng = random.Random(seed)
    users = [u["_id"] for u in dump["users"]]
    groups = {g["id"]: set(g["members"]) for g in dump["groups"]}
    group_ids = list(groups)
    pairs, seen = [], set()
    for _ in range(n * 20):
        if len(pairs) >= n:
            break
        group, user = rng.choice(group_ids), rng.choice(users)
        if user in groups[group] or (group, user) in seen:
            continue
        seen.add((group, user))
        pairs.append([group, user])
    return pairs


def run_provisioning(fleet: Fleet, sim: Simulator, directory: Path, burst: int, sequential: int,
                     servers: dict[str, int]) -> dict:
    sim.set_latency(0)
    pairs_file = directory / "pairs.json"
    pairs_file.write_text(json.dumps(member_pairs(sim.dump(), burst + sequential + 2)))
    out = directory / "provisioning.json"
    components = {"workers": [w.proc.pid for w in fleet.workers if w.queues == "provisioning"],
                  "sync workers": [w.proc.pid for w in fleet.workers if w.queues != "provisioning"],
                  "simulator": [sim.proc.pid], **{name: [pid] for name, pid in servers.items()}}

    def split() -> dict[str, float]:
        """CPU seconds of each component so far, with their children that ended (PostgreSQL's backends of the
        load's connections); ``load``: the load process (submitting and polling), this process's only child
        that has ended."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {**fleet_mod.cpu_by_component(components), "load": children.ru_utime + children.ru_stime}

    busy, load, before = fleet_mod.machine_busy_seconds(), os.getloadavg()[0], split()
    subprocess.run([sys.executable, "-m", "bench.provision_load", "--pairs", str(pairs_file), "--burst", str(burst),
                    "--sequential", str(sequential), "--out", str(out)], cwd=ROOT, env=fleet.env, check=True,
                   timeout=900)
    result = json.loads(out.read_text())
    busy = fleet_mod.machine_busy_seconds() - busy
    spent = {name: seconds - before[name] for name, seconds in split().items()}
    result["machine_busy_cpu_s"] = round(busy, 2)
    # What the machine spent on anything else meanwhile (other users' tests and builds): the burst needs about
    # both cores, so a few CPU-seconds of others' work show in its throughput.
    result["other_cpu_s"] = round(max(0.0, busy - sum(spent.values())), 2)
    # Where the CPU went, per request of the whole load (burst and one-at-a-time): on 2 cores, throughput can
    # be no more than 2,000 / the sum.
    total = burst + sequential
    result["cpu_ms_per_request"] = {name: round(seconds * 1000 / total, 2) for name, seconds in spent.items()}
    result["loadavg_1m_at_start"] = round(load, 2)
    result["latency_ms_api"] = 0
    provisioning_workers = [w for w in fleet.workers if w.queues == "provisioning"]
    result["worker_processes"] = f"{len(provisioning_workers)} x {provisioning_workers[0].concurrency} threads"
    return result


# --- incremental refresh -------------------------------------------------------------------------------------

def run_events(fleet: Fleet, sim: Simulator, engine, changes: int, window_s: float, timeout: float) -> dict:
    """The incremental refresh phase (bench/events.py): beat started with ``bench``'s refresh every
    ``EVENTS_INTERVAL``, the full sync it sends first waited for (with its rendering), then ``changes`` writes
    at random moments of ``window_s`` timed into the database, and a quiet minute. Beat is stopped and the
    config put back after it."""
    from bench import events
    from config.settings import parse_duration

    interval_s = parse_duration(EVENTS_INTERVAL).total_seconds()
    writes = events.plan_writes(sim.dump(), changes, window_s)
    connector_id = events.connector_row_id(engine, CONNECTOR)
    before = events.last_run_id(engine, connector_id)
    fleet.use_config(events_interval=EVENTS_INTERVAL)
    fleet.start_beat()
    try:
        # Beat rebuilds a schedule missing from Redis from the database's last runs (the org was synced minutes
        # ago): the full sync the refreshes start from is sent here, as an operator's would be.
        fleet.send(TaskName.SYNC_CONNECTOR, CONNECTOR, trigger=Trigger.MANUAL)
        first = events.wait_full_sync(engine, connector_id, before, timeout)
        rendered = wait_rendered(engine, CONNECTOR, timeout)
        log(f"events: the first full sync {first['status']} in {first['wall_s']:.1f}s; {changes} changes over "
            f"{window_s:.0f}s")
        sync_pids = [w.pid for w in fleet.workers if w.queues == "sync"]
        cpu = sum(map(fleet_mod.tree_cpu_seconds, sync_pids))
        measured = events.measure(engine, connector_id, sim, writes, interval_s=interval_s, log=log)
        cpu = sum(map(fleet_mod.tree_cpu_seconds, sync_pids)) - cpu
        quiet = events.quiet_minute(sim, measured.watcher, interval_s)
        others = measured.watcher.other_runs(first["run_id"])
        applied = measured.watcher.events_runs(first["run_id"])
    finally:
        fleet.stop_beat()
        fleet.use_config()
    result = events.summarize(measured, applied, quiet, others)
    result.update(interval=EVENTS_INTERVAL, window_s=window_s, beat_full_sync=first,
                  beat_full_sync_rendered_after_s=round(rendered - first["finished_at"], 2) if rendered else None,
                  sync_workers_cpu_s=round(cpu, 2), full_sync_after=sync_after_refreshes(fleet, engine, timeout))
    return result


def sync_after_refreshes(fleet: Fleet, engine, timeout: float) -> dict:
    """A full sync once the refreshes have applied every change: it writes nothing if they left the database as a
    full sync would (the same rows, deletions and content: an object read back one by one hashes as it does
    listed). What it wrote, by part, says where they differ."""
    task = fleet.send(TaskName.SYNC_CONNECTOR, CONNECTOR, trigger=Trigger.MANUAL)
    run = wait_run(engine, task.id, timeout)
    parts = [part_summary(p) for p in run.parts]
    wait_rendered(engine, CONNECTOR, timeout)
    return {"run_id": run.id, "status": run.status, "rows_written": sum(p["rows_written"] for p in parts),
            "by_part": {p["name"]: {k: v for k, v in p["counts"].items() if v and k != "rows_written"}
                        for p in parts if p["rows_written"]}}


# --- one profile ---------------------------------------------------------------------------------------------

def run_directory(stamp: str, name: str) -> Path:
    """Where a profile's logs, config and (with --keep) databases go."""
    directory = RUNS / f"{stamp}-{name}"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def run_profile(profile: str, args: argparse.Namespace, stamp: str, pg) -> dict:
    directory = run_directory(stamp, profile)
    timeout = SYNC_TIMEOUT[profile] * args.timeout_scale
    api_key = secrets.token_hex(20)
    pg_url = pg.url if pg else None
    limits = (args.budget_in_flight, args.budget_rate) if args.budget_rate else None
    started = time.monotonic()
    log(f"{profile}: simulator ({args.latency_ms:g} ms a request), Redis, database ({args.database}); "
        f"files in {directory.relative_to(ROOT)}")
    with fleet_mod.started(directory, profile=profile, latency_ms=args.latency_ms, api_key=api_key, pg=pg,
                           make_fleet=lambda broker, database, sim: Fleet(directory, broker, database, sim,
                                                                          args.in_flight, limits),
                           sync_workers=args.workers, sync_concurrency=args.sync_concurrency,
                           provisioning_workers=args.provision_workers,
                           provisioning_threads=args.provision_threads, keep=args.keep) as stack:
        sim, fleet, engine, servers = stack.sim, stack.fleet, stack.engine, stack.servers
        profiler_dir = directory if args.py_spy else None
        quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
        syncs = []
        for kind in ("full", "no-change", "change"):
            change = None
            if kind == "change":
                sim.set_latency(0)
                change = apply_change(sim.url, api_key, sim.dump())
                sim.set_latency(args.latency_ms)
            log(f"{profile}: {kind} sync")
            sync = run_sync(kind, fleet, sim, engine, timeout, profiler_dir, servers)
            if change:
                sync["change_applied"] = change
            syncs.append(sync)
            log(f"{profile}: {kind} sync {sync['status']} in {sync['wall_s']:.2f}s, {sync['requests']} requests "
                f"(R_min {sync['r_min']}), {sync['rows_written']} rows")
        budget = None
        if limits:
            log(f"{profile}: full sync of the same org under a fleet-wide budget of {limits[0]} in flight and "
                f"{limits[1]:g} requests/s ({args.workers} sync workers)")
            budget = run_sync("budget", fleet, sim, engine, timeout, None, servers, connector=LIMITED_CONNECTOR)
            budget["limits"] = {"shared_max_in_flight": limits[0], "rate_limit": limits[1]}
            log(f"{profile}: budget sync {budget['status']} in {budget['wall_s']:.2f}s; simulator saw at most "
                f"{budget['sim_max_in_flight']} in flight and {budget['sim_max_per_second']} requests in a second")
        incremental = None
        if args.events_changes:
            log(f"{profile}: incremental refresh: beat with events every {EVENTS_INTERVAL}, "
                f"{args.events_changes} changes through the write API")
            incremental = run_events(fleet, sim, engine, args.events_changes, args.events_window, timeout)
            lat = incremental["latency_s"]
            log(f"{profile}: events: {incremental['visible']}/{incremental['changes']} changes in the database, "
                f"p50 {lat['p50']}s p95 {lat['p95']}s max {lat['max']}s; refreshes {incremental['refresh_outcomes']}; "
                f"quiet minute {incremental['quiet']['requests']} request(s), simulator saw "
                f"{incremental['quiet']['sim_requests']}")
        full = syncs[0]
        n_rows = min(max(full["rows_written"], MIN_UPSERT_ROWS), MAX_UPSERT_ROWS)
        log(f"{profile}: bare upsert vs writers, {n_rows} rows")
        counter = iter(range(1000))
        scratch_databases: list[str] = []

        def scratch(tag: str) -> str:
            name = f"scratch_{profile}_{tag}_{next(counter)}"
            if pg_url:
                scratch_databases.append(name)
                return fleet_mod.new_postgres_database(pg_url, name)
            return f"sqlite:///{directory / (name + '.db')}"

        from bench.upsert import measure

        upsert = measure(scratch, sim.dump(), n_rows)
        for name in scratch_databases:  # or PostgreSQL's autovacuum works on them during what comes next
            fleet_mod.drop_postgres_database(pg_url, name)
        for sync in syncs:
            add_bounds(sync, args.latency_ms, args.in_flight, upsert)
        provisioning = run_provisioning_phase(profile, args, fleet, sim, directory, servers, profiler_dir)
        return {
            "profile": describe(profile), "database": args.database, "stamp": stamp,
            "settings": {"latency_ms": args.latency_ms, "in_flight": args.in_flight, "sync_workers": args.workers,
                         "sync_concurrency_per_worker": args.sync_concurrency, "provisioning_workers": args.provision_workers,
                         "provisioning_threads": args.provision_threads, "py_spy": bool(args.py_spy)},
            "syncs": syncs, "upsert": upsert, "provisioning": provisioning, "budget": budget,
            "incremental": incremental, "quiet_before": quiet,
            "bench_seconds": round(time.monotonic() - started, 1), "run_directory": str(directory),
        }


def run_provisioning_phase(profile: str, args: argparse.Namespace, fleet, sim, directory: Path, servers,
                           profiler_dir: Path | None) -> dict | None:
    """The provisioning phase of a profile (``--provision-burst``), profiled with py-spy when asked."""
    if not args.provision_burst:
        return None
    log(f"{profile}: provisioning, {args.provision_burst} requests in a burst, "
        f"{args.provision_sequential} one at a time (API latency 0)")
    recorder = None
    if profiler_dir is not None:
        from bench.profiling import Recorder

        recorder = Recorder([w.pid for w in fleet.workers if w.queues == "provisioning"],
                            profiler_dir / "pyspy-provisioning", root=("provision_apply",))
    try:
        provisioning = run_provisioning(fleet, sim, directory, args.provision_burst,
                                        args.provision_sequential, servers)
    finally:
        spy = recorder.stop() if recorder else None
    if spy is not None:
        provisioning["py_spy"] = spy
    return provisioning


# --- the API phase -------------------------------------------------------------------------------------------

def run_api(args: argparse.Namespace, stamp: str, pg) -> dict:
    """The API phase (bench/api_phase.py): the small tenant synced once, then provisioning through ``jumpsync
    api`` at API latency 0, with the provisioning workers (``--provision-workers`` on threads)."""
    from bench import api_phase

    directory = run_directory(stamp, "api")
    timeout = SYNC_TIMEOUT["small"] * args.timeout_scale
    started = time.monotonic()
    log(f"api: simulator (small), Redis, database ({args.database}), a sync worker, {args.provision_workers} "
        f"provisioning workers x {args.provision_threads} threads; "
        f"files in {directory.relative_to(ROOT)}")

    def make_fleet(broker: str, database: str, sim: Simulator) -> Fleet:
        group = api_phase.approval_group(sim.dump())
        return api_phase.ApiFleet(directory, broker, database, sim, args.in_flight, group["name"])

    with fleet_mod.started(directory, profile="small", latency_ms=args.latency_ms, api_key=secrets.token_hex(20),
                           pg=pg, make_fleet=make_fleet, sync_workers=1, sync_concurrency=args.sync_concurrency,
                           provisioning_workers=args.provision_workers,
                           provisioning_threads=args.provision_threads, keep=args.keep) as stack:
        sim, fleet, engine = stack.sim, stack.fleet, stack.engine
        sync = run_sync("full", fleet, sim, engine, timeout, None, stack.servers)
        log(f"api: full sync {sync['status']} in {sync['wall_s']:.2f}s")
        sim.set_latency(0)
        quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
        server = api_phase.ApiServer(fleet)
        try:
            server.wait_ready()
            sizes = {"sequential": args.api_sequential, "burst": args.api_burst, "approvals": args.api_approvals,
                     "clients": args.api_clients}
            log(f"api: {sizes['sequential']} requests one at a time, {sizes['burst']} from {sizes['clients']} "
                f"connections, {sizes['approvals']} through an approval, token checks")
            figures = api_phase.run_load(fleet, sim, engine, server, directory, stack.servers, sizes)
        finally:
            server.stop()
    seq, burst, appr = figures["sequential"], figures["burst"], figures["approval"]
    log(f"api: POST → applied p50 {seq['latency_ms'].get('p50')} ms (p95 {seq['latency_ms'].get('p95')}); burst "
        f"{burst['throughput_per_s']}/s; approval overhead {appr.get('overhead_ms')} ms; token check "
        f"{figures['token_check']['authenticate_ms']} ms")
    return {"profile": {"name": "api", "tenant": describe("small")}, "database": args.database, "stamp": stamp,
            "settings": {"latency_ms_sync": args.latency_ms, "latency_ms_provisioning": 0,
                         "provisioning_workers": args.provision_workers,
                         "provisioning_threads": args.provision_threads, "api_processes": 1},
            "api": figures, "sync": {k: sync[k] for k in ("status", "wall_s", "requests")},
            "quiet_before": quiet, "bench_seconds": round(time.monotonic() - started, 1),
            "run_directory": str(directory)}


# --- provisioning at a real API's latency --------------------------------------------------------------------

def run_latency(args: argparse.Namespace, stamp: str, pg) -> dict:
    """The latency phase (bench/latency_phase.py): a burst of requests during a full sync, every API request
    taking ``--provision-latency-ms``."""
    from bench import latency_phase

    return latency_phase.run(args, stamp, pg, run_directory(stamp, "latency"), log, run_sync)


# --- the MSP phase -------------------------------------------------------------------------------------------

def run_msp(args: argparse.Namespace, stamp: str, pg) -> dict:
    """The MSP phase (bench/msp.py): ``--msp-orgs`` small orgs behind one key, discovered and synced by the sync
    workers and beat for ``--msp-window`` seconds, saturated; no provisioning worker (nothing to provision)."""
    from bench import msp

    directory = run_directory(stamp, "msp")
    settings = msp.MspSettings(orgs=args.msp_orgs, window_s=args.msp_window, latency_ms=args.latency_ms,
                               shared_max_in_flight=args.msp_in_flight, rate_limit=args.msp_rate,
                               interval=args.msp_interval, max_in_flight=args.in_flight,
                               events_interval=args.msp_events)
    started = time.monotonic()
    log(f"msp: simulator with {settings.orgs} orgs behind one key ({args.latency_ms:g} ms a request), Redis, "
        f"database ({args.database}); files in {directory.relative_to(ROOT)}")
    with fleet_mod.started(directory, profile="msp", latency_ms=args.latency_ms, api_key=secrets.token_hex(20),
                           pg=pg, make_fleet=lambda broker, database, sim: msp.MspFleet(directory, broker, database,
                                                                                         sim, settings),
                           sync_workers=args.workers, sync_concurrency=args.sync_concurrency, orgs=settings.orgs,
                           provisioning=False, keep=args.keep) as stack:
        quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
        figures = msp.measure(stack, settings, log)
        seconds = round(time.monotonic() - started, 1)
    throughput, fairness = figures["throughput"], figures["fairness"]
    log(f"msp: {throughput['per_hour']:,} syncs/h ({throughput['steady_per_hour']} steady), per org "
        f"{fairness['per_org']}, Jain {fairness['jain']}, longest gap {fairness['max_gap_s']}s, "
        f"starved {len(fairness['starved'])}; simulator max {figures['budget']['sim_max_in_flight']} in flight "
        f"(budget {settings.shared_max_in_flight})")
    return {"profile": {**describe("msp"), "orgs": settings.orgs}, "database": args.database, "stamp": stamp,
            "settings": {"latency_ms": args.latency_ms, "in_flight": args.in_flight, "sync_workers": args.workers,
                         "sync_concurrency_per_worker": args.sync_concurrency},
            "msp": figures, "quiet_before": quiet, "bench_seconds": seconds, "run_directory": str(directory)}


# --- the footprint phase -------------------------------------------------------------------------------------

def run_footprint(args: argparse.Namespace, stamp: str, pg) -> dict:
    """The footprint phase (bench/footprint.py): ``jumpsync up`` on its demo and on each of
    ``--footprint-tenants``, the memory of each kind of process it starts. ``up`` brings its own Redis and SQLite
    database, whatever ``--database`` says."""
    from bench import footprint

    directory = run_directory(stamp, "footprint")
    started = time.monotonic()
    tenants = [footprint.DEMO] + [t.strip() for t in args.footprint_tenants.split(",") if t.strip()]
    quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
    figures = {}
    for tenant in tenants:
        log(f"footprint: jumpsync up on {tenant}; files in {(directory / tenant).relative_to(ROOT)}")
        timeout = SYNC_TIMEOUT.get(tenant, 300) * args.timeout_scale
        figures[tenant] = footprint.measure(tenant, directory / tenant, latency_ms=args.latency_ms,
                                            sync_timeout=timeout, log=log)
    return {"profile": {"name": "footprint"}, "database": "sqlite", "stamp": stamp,
            "settings": {"latency_ms": args.latency_ms}, "footprint": figures, "quiet_before": quiet,
            "bench_seconds": round(time.monotonic() - started, 1), "run_directory": str(directory)}


def update_docs(stamp: str) -> None:
    """docs/benchmarks.md from the newest results; a run that measured fewer profiles than it shows writes its
    block beside the run directories instead."""
    partial = RUNS / f"{stamp}-benchmarks-block.md"
    path = report.update_docs(RESULTS, partial=partial)
    if path == partial:
        log(f"docs/benchmarks.md left as it is: it shows profiles this machine has no results of; this run's "
            f"block is in {path.relative_to(ROOT)}, to merge by hand")
    else:
        log(f"updated {path.relative_to(ROOT)}")


#: The phases that are not a tenant profile's syncs.
PHASES = {"msp": run_msp, "api": run_api, "latency": run_latency, "footprint": run_footprint}


def run_profiles(args: argparse.Namespace, profiles: list[str], stamp: str) -> tuple[list[dict], list[str]]:
    """Every profile on ``args.database``: the results written, and the profiles that failed."""
    pg = pg_dir = None
    results: list[dict] = []
    failed: list[str] = []
    try:
        if args.database == "postgres":
            log("starting a private PostgreSQL")
            pg, pg_dir = fleet_mod.start_postgres()
        info = machine(args.database, pg.url if pg else None)
        for profile in profiles:
            try:
                phase = PHASES.get(profile)
                result = phase(args, stamp, pg) if phase else run_profile(profile, args, stamp, pg)
            except Exception as exc:  # noqa: BLE001  (report it, go on with the next profile)
                log(f"{profile}: FAILED: {type(exc).__name__}: {exc}")
                import traceback

                traceback.print_exc()
                failed.append(profile)
                continue
            result["machine"] = info
            path = RESULTS / f"{stamp}-{profile}.json"
            path.write_text(json.dumps(result, indent=2, default=str))
            log(f"{profile}: wrote {path.relative_to(ROOT)}")
            results.append(result)
    finally:
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_dir, ignore_errors=True)
    return results, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="small,large,api,latency,msp,footprint",
                        help="comma-separated: small, large, xl (opt-in), api (the HTTP API), latency (provisioning "
                             "at a real API's latency during a sync), msp (the MSP phase), footprint (the memory "
                             "of jumpsync up's processes)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated API latency per request")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite",
                        help="both: every profile on SQLite, then on a private PostgreSQL, in one run")
    parser.add_argument("--workers", type=int, default=2, help="sync worker processes (celery worker instances)")
    parser.add_argument("--sync-concurrency", type=int, default=2,
                        help="pool processes per sync worker (default 2: 2 x 2 lets the 4 fetch parts run at once)")
    parser.add_argument("--in-flight", type=int, default=8, help="the connector's max_in_flight")
    parser.add_argument("--budget-rate", type=float, default=150.0,
                        help="requests/s of the budget phase's connector (0: skip the phase)")
    parser.add_argument("--budget-in-flight", type=int, default=6,
                        help="shared_max_in_flight of the budget phase's connector")
    parser.add_argument("--provision-workers", type=int, default=2,
                        help="provisioning workers (processes, on Celery's thread pool)")
    parser.add_argument("--provision-threads", type=int, default=16,
                        help="requests in flight per provisioning worker (its threads)")
    parser.add_argument("--provision-burst", type=int, default=500, help="requests for the throughput (0: skip)")
    parser.add_argument("--provision-latency-ms", type=float, default=100.0,
                        help="the latency phase: the simulator's latency for every request")
    parser.add_argument("--latency-burst", type=int, default=2000,
                        help="the latency phase: requests submitted back to back during the sync")
    parser.add_argument("--latency-budget", type=int, default=48,
                        help="the latency phase: the connector's shared_max_in_flight (sync and provisioning)")
    parser.add_argument("--provision-sequential", type=int, default=50, help="requests for the latency")
    parser.add_argument("--api-sequential", type=int, default=100,
                        help="the API phase: requests one at a time, for the latency")
    parser.add_argument("--api-burst", type=int, default=1000, help="the API phase: requests for the throughput")
    parser.add_argument("--api-clients", type=int, default=8, help="the API phase: the burst's connections")
    parser.add_argument("--api-approvals", type=int, default=50,
                        help="the API phase: requests through an approval, one at a time")
    parser.add_argument("--events-changes", type=int, default=30,
                        help="changes timed through the incremental refresh, with beat (0: skip the phase)")
    parser.add_argument("--events-window", type=float, default=180.0,
                        help="seconds over which those changes are spread at random moments")
    parser.add_argument("--msp-orgs", type=int, default=50,
                        help="organisations behind the MSP phase's one key (0: skip the phase)")
    parser.add_argument("--msp-window", type=float, default=180.0,
                        help="seconds the MSP phase measures once every organisation is scheduled")
    parser.add_argument("--msp-in-flight", type=int, default=8,
                        help="the MSP key's shared_max_in_flight, shared by all its organisations")
    parser.add_argument("--msp-rate", type=float, default=20.0,
                        help="the MSP key's rate_limit in requests/s, shared by all its organisations (0: none)")
    parser.add_argument("--msp-interval", default="30s",
                        help="every organisation's full-sync interval: short, so that the fleet runs saturated")
    parser.add_argument("--msp-events", default=None,
                        help="the MSP phase: each organisation's events refresh interval (default: events off)")
    parser.add_argument("--footprint-tenants", default="large",
                        help="the footprint phase: bench profiles to run jumpsync up on, besides its demo")
    parser.add_argument("--py-spy", action="store_true",
                        help="sample the workers with py-spy during every sync and the provisioning runs")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every sync timeout")
    parser.add_argument("--wait-quiet", type=float, default=300,
                        help="before each profile, wait up to this many seconds for the machine to be <25%% busy "
                             "(0: do not wait)")
    parser.add_argument("--keep", action="store_true", help="keep the databases under var/bench/runs/")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if not args.msp_orgs:
        profiles = [p for p in profiles if p != "msp"]
    for profile in profiles:
        if profile not in PHASES:
            describe(profile)  # unknown names stop here
    if args.py_spy:
        from bench.profiling import available

        if not available():
            parser.error("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    failed: list[str] = []
    stamp = ""
    for database in ("sqlite", "postgres") if args.database == "both" else (args.database,):
        previous, stamp = stamp, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if stamp == previous:  # one stamp per database: its result files and run directories
            time.sleep(1.0)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        measured, not_measured = run_profiles(argparse.Namespace(**{**vars(args), "database": database}),
                                              profiles, stamp)
        results += measured
        failed += [f"{profile} ({database})" for profile in not_measured]
    print()
    print(report.tables(results))
    if not args.no_docs and results:
        update_docs(stamp)
    if failed:
        log(f"failed: {', '.join(failed)} (logs under {RUNS.relative_to(ROOT)})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
