"""The ``jumpsync`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from worker.settings import ALL_RESOURCE_TYPES, ConfigError

app = typer.Typer(help="Keep a database in step with JumpCloud organisations.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()
err = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="Config file (default: $JUMPSYNC_CONFIG or ./jumpsync.toml).")


def _use_config(config: Optional[Path]) -> None:
    """Point this process (and any child) at the config file, and fail early on a bad one."""
    if config is not None:
        os.environ["JUMPSYNC_CONFIG"] = str(config)
    from worker import runtime

    try:
        runtime.settings()
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _celery(*args: str) -> None:
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "worker.celery_app", *args])


@app.command()
def up(once: bool = typer.Option(False, "--once", help="Wait for the first sync of every connector, then exit."),
       config: Optional[Path] = ConfigOption,
       flower_port: int = typer.Option(5555, help="Flower's port (loopback only)."),
       concurrency: int = typer.Option(4, help="Worker processes.")) -> None:
    """Run the whole thing locally: broker, worker, beat and Flower (and a simulated org when none is configured)."""
    from worker.up import run_up

    if config is not None:
        os.environ["JUMPSYNC_CONFIG"] = str(config)
    raise typer.Exit(run_up(once=once, flower_port=flower_port, concurrency=concurrency, console=console))


@app.command()
def worker(config: Optional[Path] = ConfigOption,
           queues: str = typer.Option("sync,provisioning", help="Queues to consume, comma-separated."),
           concurrency: int = typer.Option(4, help="Worker processes."),
           loglevel: str = typer.Option("INFO")) -> None:
    """Start a Celery worker (prefork pool)."""
    _use_config(config)
    _celery("worker", "-Q", queues, "-c", str(concurrency), "-l", loglevel, "-E")


@app.command()
def beat(config: Optional[Path] = ConfigOption, loglevel: str = typer.Option("INFO")) -> None:
    """Start Celery beat; only one beat sends at a time (others wait for the lock)."""
    _use_config(config)
    _celery("beat", "-l", loglevel)


@app.command()
def flower(config: Optional[Path] = ConfigOption, port: int = typer.Option(5555),
           address: str = typer.Option("127.0.0.1")) -> None:
    """Start Flower. Basic auth from $JUMPSYNC_FLOWER_BASIC_AUTH (user:password[,user:password])."""
    _use_config(config)
    args = ["flower", f"--port={port}", f"--address={address}"]
    if os.environ.get("JUMPSYNC_FLOWER_BASIC_AUTH"):
        args.append(f"--basic-auth={os.environ['JUMPSYNC_FLOWER_BASIC_AUTH']}")
    _celery(*args)


@app.command()
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


@app.command()
def sync(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
         wait: bool = typer.Option(False, "--wait", help="Wait for the run to end; exit 1 unless it succeeded."),
         timeout: float = typer.Option(3600, help="Seconds to wait with --wait."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Trigger a sync of one connector now."""
    _use_config(config)
    from worker import runtime
    from worker.celery_app import app as celery_app

    try:
        runtime.settings().file.connector(name)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    sent = celery_app.send_task("jumpsync.sync.connector", args=[name], kwargs={"trigger": "manual"}, queue="sync")
    if not wait:
        _print_json({"task_id": sent.id}) if as_json else console.print(f"queued sync of {name} (task {sent.id})")
        return
    run = wait_for_run(sent.id, timeout)
    if run is None:
        err.print(f"[red]timed out[/red] after {timeout:.0f}s waiting for the sync of {name}")
        raise typer.Exit(1)
    if as_json:
        _print_json(run)
    else:
        print_run(name, run)
    raise typer.Exit(0 if run["status"] == "succeeded" else 1)


def wait_for_run(task_id: str, timeout: float) -> dict | None:
    """Poll the database until the run started by ``task_id`` has ended (or was skipped)."""
    from models import queries
    from worker import runtime

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = queries.run_by_task_id(runtime.engine(), task_id)
        if run is not None and run["finished_at"] is not None:
            return run
        time.sleep(0.5)
    return None


def print_run(name: str, run: dict) -> None:
    colour = {"succeeded": "green", "partial": "yellow", "skipped": "yellow"}.get(run["status"], "red")
    console.print(f"{name}: run {run['id']} [{colour}]{run['status']}[/{colour}]"
                  + (f" — {run['error']}" if run.get("error") else ""))
    table = Table("part", "status", "requests", "counts", "error")
    for part in run["parts"]:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(part["counts"].items()))
        table.add_row(part["name"], part["status"], str(part["requests"]), counts, part["error"] or "")
    if run["parts"]:
        console.print(table)


@app.command()
def status(config: Optional[Path] = ConfigOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """Connectors with their last run, counts and failures."""
    _use_config(config)
    from models import queries
    from worker import runtime

    data = queries.status(runtime.engine(), [c.name for c in runtime.settings().connectors])
    if as_json:
        _print_json(data)
        return
    table = Table("connector", "configured", "last run", "status", "finished", "last success", "resources", "grants", "error")
    for entry in data:
        run = entry["last_run"] or {}
        resources = ", ".join(f"{k}={v}" for k, v in sorted(entry["resources"].items()))
        table.add_row(entry["connector"], "yes" if entry["configured"] else "no", str(run.get("id", "")),
                      run.get("status", "never"), run.get("finished_at") or "", entry["last_success_at"] or "",
                      resources, str(entry["grants"]), (run.get("error") or "")[:80])
    console.print(table)


def _connector_query(fn, *args, **kwargs):
    from models import queries
    from worker import runtime

    try:
        return fn(runtime.engine(), *args, **kwargs)
    except queries.UnknownConnector as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def resources(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
              type_: Optional[str] = typer.Option(None, "--type", help="One of " + ", ".join(ALL_RESOURCE_TYPES)),
              live: bool = typer.Option(False, "--live", help="Leave out resources deleted in JumpCloud."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Resources of a connector (accounts, groups, apps, roles)."""
    _use_config(config)
    if type_ is not None and type_ not in ALL_RESOURCE_TYPES:
        err.print(f"[red]error:[/red] --type {type_!r} is not one of {', '.join(ALL_RESOURCE_TYPES)}")
        raise typer.Exit(2)
    from models import queries

    data = _connector_query(queries.resources, name, type_, include_deleted=not live)
    if as_json:
        _print_json(data)
        return
    table = Table("type", "id", "name", "email", "status", "deleted")
    for item in data:
        table.add_row(item["type"], item["id"], item["name"], item.get("email") or "", item.get("status") or "",
                      "yes" if item["deleted"] else "")
    console.print(table)


@app.command()
def grants(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
           live: bool = typer.Option(False, "--live", help="Leave out grants deleted in JumpCloud."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Grants of a connector: group members, app access (direct or via a group), role assignments."""
    _use_config(config)
    from models import queries

    data = _connector_query(queries.grants, name, include_deleted=not live)
    if as_json:
        _print_json(data)
        return
    table = Table("resource", "entitlement", "principal", "via", "deleted")
    for g in data:
        table.add_row(f"{g['resource_type']}:{g['resource_id']}", g["entitlement"],
                      f"{g['principal_type']}:{g['principal_id']}", g["via"] or "", "yes" if g["deleted"] else "")
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
