"""``jumpsync worker | beat | flower | simulator | health``: the processes of a deployment, and its probe."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cli import output
from cli.common import ConfigOption, print_json, use_config
from cli.flower import DEFAULT_PORT as FLOWER_PORT

console = output.stdout()


def _celery(*args: str) -> None:
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "worker.celery_app", *args])


class WorkerPool(StrEnum):
    AUTO = "auto"
    PREFORK = "prefork"
    THREADS = "threads"


#: Requests a provisioning worker on threads applies at once, unless told: at a real API's latency, what it
#: applies a second is this many ÷ the latency.
THREADS_IN_FLIGHT = 16


def pool_for(queues: str, pool: WorkerPool) -> WorkerPool:
    """The pool a worker runs: threads for a provisioning-only worker when ``auto``."""
    if pool is not WorkerPool.AUTO:
        return pool
    return WorkerPool.THREADS if {q.strip() for q in queues.split(",")} == {"provisioning"} else WorkerPool.PREFORK


def worker(config: Optional[Path] = ConfigOption,
           queues: str = typer.Option("sync,provisioning", "--queues", "-Q", help="Queues to consume, comma-separated."),
           concurrency: Optional[int] = typer.Option(
               None, "--concurrency", "-c", min=1,
               help="Pool processes (prefork) or requests in flight (threads). Default: 4; 16 on threads."),
           pool: WorkerPool = typer.Option(WorkerPool.AUTO, "--pool", "-P",
                                           help="auto: threads for the provisioning queue alone, else prefork."),
           name: str = typer.Option("", "--name", "-n", help="Celery node name (default: QUEUE@hostname)."),
           loglevel: str = typer.Option("INFO")) -> None:
    """Start a Celery worker. $JUMPSYNC_METRICS_PORT turns on its Prometheus /metrics.

    Syncs run on a prefork pool (CPU, time limits); a provisioning-only worker runs on threads, each applying
    its requests on an event loop of its own (docs/provisioning.md, "Concurrency and order")."""
    from telemetry.multiproc import ensure_multiproc_dir

    use_config(config)
    from config.settings import check_api_keys
    from worker import runtime

    check_api_keys(runtime.settings())  # a missing secret stops the worker now, not mid-sync
    ensure_multiproc_dir()  # before Celery starts: its command line imports prometheus_client early
    chosen = pool_for(queues, pool)
    in_flight = concurrency or (THREADS_IN_FLIGHT if chosen is WorkerPool.THREADS else 4)
    if chosen is WorkerPool.THREADS:  # a request holds a database connection while JumpCloud answers
        os.environ["JUMPSYNC_DB_POOL_SIZE"] = str(in_flight + 2)
    node = name or f"{queues.split(',')[0]}@%h"
    _celery("worker", "-Q", queues, "-P", chosen.value, "-c", str(in_flight), "-n", node, "-l", loglevel, "-E")


def beat(config: Optional[Path] = ConfigOption, loglevel: str = typer.Option("INFO")) -> None:
    """Start Celery beat; only one beat sends at a time (others wait for the lock)."""
    use_config(config)
    _celery("beat", "-l", loglevel)


def flower(config: Optional[Path] = ConfigOption, port: int = typer.Option(FLOWER_PORT),
           address: str = typer.Option("127.0.0.1"),
           no_auth: bool = typer.Option(False, "--no-auth",
                                        help="Run without authentication: on a loopback address only.")) -> None:
    """Start Flower, which starts no tasks. Basic auth from $JUMPSYNC_FLOWER_BASIC_AUTH (user:password[,…]) or
    the file named by $JUMPSYNC_FLOWER_BASIC_AUTH_FILE; without either it refuses to start (see --no-auth)."""
    from cli import flower as dashboard

    use_config(config)
    try:
        dashboard.run(port=port, address=address, no_auth=no_auth)
    except dashboard.FlowerRefused as exc:
        output.stderr().print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def simulator(host: str = typer.Option("127.0.0.1", help="Listen address (keep it on loopback)."),
              port: int = typer.Option(8089),
              seed: int = typer.Option(1), users: int = typer.Option(200), admins: int = typer.Option(10),
              groups: int = typer.Option(20), apps: int = typer.Option(10),
              orgs: int = typer.Option(1, help="More than 1: multi-tenant mode, x-org-id required."),
              latency_ms: float = typer.Option(0.0),
              api_key_file: Optional[Path] = typer.Option(None, help="File with the key; else $JUMPSYNC_SIM_API_KEY.")) -> None:
    """Serve the JumpCloud API simulator with a generated tenant."""
    from simulator.cli import serve

    serve(host=host, port=port, seed=seed, users=users, admins=admins, groups=groups, apps=apps, orgs=orgs,
          latency_ms=latency_ms, api_key_file=api_key_file)


def health(config: Optional[Path] = ConfigOption,
           worker_name: Optional[str] = typer.Option(None, "--worker", help="Also ping this worker (e.g. sync@$HOSTNAME)."),
           min_workers: int = typer.Option(0, help="Also require this many workers to answer."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the broker, the database (reachable and migrated) and optionally workers; exit 1 if any fails."""
    use_config(config)
    from worker import runtime
    from worker.celery_app import app as celery_app
    from worker.health import run_checks

    result = run_checks(celery_app, runtime.settings().database_url, worker=worker_name, min_workers=min_workers)
    if as_json:
        print_json(result)
    else:
        for name in ("broker", "database", "workers"):
            check = result[name]
            mark = "[green]ok[/green]" if check["ok"] else "[red]FAIL[/red]"
            detail = check.get("error") or check.get("skipped") or ", ".join(check.get("workers", []))
            console.print(f"{name:<9} {mark} {escape(detail)}")
    raise typer.Exit(0 if result["ok"] else 1)
