"""The provisioning-at-latency phase (``--profiles latency``): a burst of requests while a full sync runs, with
JumpCloud answering every request after ``--provision-latency-ms`` (100 by default), as a real API does.

The ``large`` tenant is synced once (a deployment has synced before it provisions), then a second full sync is
sent and, at once, ``--latency-burst`` ``group.add-member`` requests are submitted back to back through
``jumpsync.api.submit_request`` (``bench/provision_load.py``, a process of its own). The connector ``bench`` has a
shared budget (``shared_max_in_flight``, in Redis) that the sync's parts and the provisioning workers draw on
together: the simulator's highest count of requests in flight shows that the budget held. The provisioning
workers are ``--provision-workers`` processes on Celery's thread pool, ``--provision-threads`` each.

Figures: the burst's applied/s (requests ÷ first submission → last ``finished_at``), p50/p95 of each
request's submission → applied, and the sync's wall time beside it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import fleet as fleet_mod
from bench.fleet import CONNECTOR, KEY_ENV, Fleet, Simulator
from bench.profiles import SYNC_TIMEOUT, describe
from models.states import Trigger
from worker.names import TaskName

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "large"


class BudgetFleet(Fleet):
    """The bench fleet whose connector ``bench`` has a shared budget of ``shared_in_flight`` requests in flight."""

    def __init__(self, directory: Path, broker_url: str, database_url: str, sim: Simulator, in_flight: int,
                 shared_in_flight: int) -> None:
        self.shared_in_flight = shared_in_flight
        super().__init__(directory, broker_url, database_url, sim, in_flight)

    def _config(self, limits: tuple[int, float] | None, events_interval: str | None) -> str:
        return super()._config(None, None).replace(
            f"max_in_flight = {self.in_flight}\n",
            f"max_in_flight = {self.in_flight}\nshared_max_in_flight = {self.shared_in_flight}\n", 1)


def run(args: argparse.Namespace, stamp: str, pg, directory: Path, log: Callable[[str], None],
        run_sync: Callable[..., dict]) -> dict:
    """The phase; ``run_sync`` is ``bench.run.run_sync`` (one full sync, waited for)."""
    from bench.run import member_pairs

    latency = args.provision_latency_ms
    timeout = SYNC_TIMEOUT[PROFILE] * args.timeout_scale
    started = time.monotonic()
    log(f"latency: simulator ({PROFILE}, {latency:g} ms a request), Redis, database ({args.database}), "
        f"{args.workers} sync workers, {args.provision_workers} provisioning workers x {args.provision_threads} "
        f"threads, shared budget {args.latency_budget} in flight; files in {directory.relative_to(ROOT)}")
    with fleet_mod.started(directory, profile=PROFILE, latency_ms=latency, api_key=secrets.token_hex(20), pg=pg,
                           make_fleet=lambda broker, database, sim: BudgetFleet(
                               directory, broker, database, sim, args.in_flight, args.latency_budget),
                           sync_workers=args.workers, sync_concurrency=args.sync_concurrency,
                           provisioning_workers=args.provision_workers,
                           provisioning_threads=args.provision_threads, keep=args.keep) as stack:
        sim, fleet, engine = stack.sim, stack.fleet, stack.engine
        first = run_sync("full", fleet, sim, engine, timeout, None, stack.servers)
        log(f"latency: first full sync {first['status']} in {first['wall_s']:.1f}s")
        pairs_file = directory / "latency-pairs.json"
        pairs_file.write_text(json.dumps(member_pairs(sim.dump(), args.latency_burst + 2)))
        sim.reset_stats()
        sync_task = fleet.send(TaskName.SYNC_CONNECTOR, CONNECTOR, trigger=Trigger.MANUAL)
        burst = _burst(fleet, directory, pairs_file, args.latency_burst)
        during = _wait_run(engine, sync_task.id, timeout)
        stats = sim.stats()
    figures = {
        "latency_ms_api": latency, "burst": burst,
        "sync": during, "first_sync": {k: first[k] for k in ("status", "wall_s", "requests")},
        "budget": {"shared_max_in_flight": args.latency_budget, "sim_max_in_flight": stats["max_in_flight"],
                   "requests": stats["requests"]},
        "workers": f"{args.provision_workers} x {args.provision_threads} threads",
    }
    log(f"latency: {burst['requests']} requests applied at {burst['throughput_per_s']}/s, p50 "
        f"{burst['latency_ms'].get('p50')} ms, p95 {burst['latency_ms'].get('p95')} ms from submission; the "
        f"sync beside it {during['status']} in {during['wall_s']}s; simulator max {stats['max_in_flight']} in "
        f"flight (budget {args.latency_budget})")
    return {"profile": {"name": "latency", "tenant": describe(PROFILE)}, "database": args.database,
            "stamp": stamp,
            "settings": {"latency_ms": latency, "in_flight": args.in_flight, "sync_workers": args.workers,
                         "sync_concurrency_per_worker": args.sync_concurrency,
                         "provisioning_workers": args.provision_workers,
                         "provisioning_threads": args.provision_threads},
            "latency": figures, "bench_seconds": round(time.monotonic() - started, 1),
            "run_directory": str(directory)}


def _burst(fleet: Fleet, directory: Path, pairs_file: Path, requests: int) -> dict:
    out = directory / "latency-burst.json"
    env = {k: v for k, v in fleet.env.items() if k != KEY_ENV}
    subprocess.run([sys.executable, "-m", "bench.provision_load", "--pairs", str(pairs_file), "--burst",
                    str(requests), "--sequential", "0", "--timeout", "600", "--out", str(out)],
                   cwd=ROOT, env=env, check=True, timeout=900)
    return json.loads(out.read_text())["burst"]


def _wait_run(engine, task_id: str, timeout: float) -> dict:
    from bench.run import wait_run

    run = wait_run(engine, task_id, timeout)
    assert run.started_at is not None and run.finished_at is not None
    return {"status": str(run.status), "wall_s": round((run.finished_at - run.started_at).total_seconds(), 2),
            "started_at": run.started_at.isoformat(), "finished_at": run.finished_at.isoformat()}
