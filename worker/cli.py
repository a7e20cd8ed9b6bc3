"""The ``jumpsync`` command line."""

from __future__ import annotations

from worker import startup  # first: it pauses the garbage collector while the command line is imported

import getpass
import json
import logging
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.text import Text

from cli import output
from cli.output import Col, JsonOption, Output, OutputOption, WideOption

from provisioning.names import ACTION_NAMES
from worker.cli_db import db_app
from worker.render import cell
from worker.cli_changes import changes
from worker.cli_deletions import deletions_app
from worker.settings import ALL_RESOURCE_TYPES, ConfigError

app = typer.Typer(help="Keep a database in step with JumpCloud organisations.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = output.stdout()
err = output.stderr()

ConfigOption = typer.Option(None, "--config", help="Config file (default: $JUMPSYNC_CONFIG or ./jumpsync.toml).")


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
           queues: str = typer.Option("sync,provisioning", "--queues", "-Q", help="Queues to consume, comma-separated."),
           concurrency: int = typer.Option(4, "--concurrency", "-c", help="Worker processes."),
           name: str = typer.Option("", "--name", "-n", help="Celery node name (default: QUEUE@hostname)."),
           loglevel: str = typer.Option("INFO")) -> None:
    """Start a Celery worker (prefork pool). $JUMPSYNC_METRICS_PORT turns on its Prometheus /metrics."""
    from telemetry.multiproc import ensure_multiproc_dir

    _use_config(config)
    from worker import runtime
    from worker.settings import check_api_keys

    check_api_keys(runtime.settings())  # a missing secret stops the worker now, not mid-sync
    ensure_multiproc_dir()  # before Celery starts: its command line imports prometheus_client early
    node = name or f"{queues.split(',')[0]}@%h"
    _celery("worker", "-Q", queues, "-c", str(concurrency), "-n", node, "-l", loglevel, "-E")


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

    return queries.wait_for_run(runtime.engine(), task_id, timeout, poll=0.5)


RUN_PARTS = (Col("part", identity=True), Col("status", identity=True, style=output.status_style),
             Col("requests", drop=2), Col("counts", drop=3), Col("error", wrap=True, drop=1))


def print_run(name: str, run: dict) -> None:
    line = Text(f"{name}: run {run['id']} ") + Text(run["status"], style=output.status_style(run["status"]))
    console.print(line + cell(f" — {run['error']}" if run.get("error") else ""))
    if run["parts"]:
        output.print_rows(RUN_PARTS, ((part["name"], part["status"], part["requests"],
                                       ", ".join(f"{k}={v}" for k, v in sorted(part["counts"].items())),
                                       part["error"]) for part in run["parts"]), output.choose())


@app.command()
def status(config: Optional[Path] = ConfigOption, as_json: bool = JsonOption, wide: bool = WideOption,
           output_: Optional[Output] = OutputOption) -> None:
    """Connectors: last run and its outcome, next scheduled sync, live counts, pending provisioning."""
    _use_config(config)
    from models import queries
    from worker import runtime

    from worker.access_snapshots import rendering_state

    data = queries.status(runtime.engine(), [c.name for c in runtime.settings().connectors])
    for entry, next_at in zip(data, _next_syncs([e["connector"] for e in data])):
        entry["next_sync_at"] = next_at
        entry["access_rendering"] = rendering_state(runtime.engine(), entry["connector"])
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        _print_json(data)
        return
    rows = []
    for entry in data:
        run = entry["last_run"] or {}
        rows.append((entry["connector"] + ("" if entry["configured"] else " (not configured)"),
                     run.get("status", "never") + (f" #{run['id']}" if run else ""), run.get("finished_at"),
                     entry["last_success_at"], entry["next_sync_at"] or "unknown",
                     ", ".join(f"{k}={v}" for k, v in sorted(entry["resources"].items())), entry["grants"],
                     ", ".join(f"{k}={v}" for k, v in sorted(entry["provisioning"].items())),
                     _rendering(entry["access_rendering"], shown), run.get("error")))
    output.print_rows(STATUS_COLUMNS, rows, shown)


#: At 80 columns: connector, last run, finished, next sync and the error (the others are dropped in this order).
STATUS_COLUMNS = (Col("connector", identity=True), Col("last run", identity=True, style=output.status_style),
                  Col("finished", time=True, drop=2), Col("last success", time=True, drop=6),
                  Col("next sync", time=True, drop=3), Col("resources", drop=7), Col("grants", drop=4),
                  Col("provisioning", drop=5), Col("report/export", drop=8), Col("error", wrap=True, drop=1))


def _rendering(state: dict | None, shown: Output) -> str:
    """The stored report and export: rendered when, and whether the commands serve it (docs/access.md)."""
    if state is None:
        return "never rendered"
    at = output.full_time(state["rendered_at"]) if shown is Output.tsv else output.short_time(state["rendered_at"])
    return f"{'current' if state['current'] else 'stale'}, {at}"


def _next_syncs(names: list[str]) -> list[str | None]:
    """Next trigger per connector from beat's entries in Redis; None for all when Redis cannot be read."""
    try:
        from worker.beat import next_syncs
        from worker.celery_app import app as celery_app

        found = next_syncs(celery_app, names)
        return [found.get(name) for name in names]
    except Exception:  # noqa: BLE001  (status must work with the broker down)
        return [None] * len(names)


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
              as_json: bool = JsonOption, wide: bool = WideOption,
              output_: Optional[Output] = OutputOption) -> None:
    """Resources of a connector (accounts, groups, apps, roles)."""
    _use_config(config)
    check_resource_type(type_)
    from models import queries

    data = _connector_query(queries.resources, name, type_, include_deleted=not live)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        _print_json(data)
        return
    output.print_rows(RESOURCE_COLUMNS, ((item["type"], item["id"], item["name"], item.get("email"),
                                          item.get("status"), "yes" if item["deleted"] else "") for item in data),
                      shown)


RESOURCE_COLUMNS = (Col("type"), Col("id", identity=True), Col("name", identity=True), Col("email", identity=True),
                    Col("status", identity=True, style=output.status_style), Col("deleted", drop=1))


def check_resource_type(type_: Optional[str]) -> None:
    """Exit 2 on a ``--type`` that is no resource type, offering the closest."""
    if type_ is not None and type_ not in ALL_RESOURCE_TYPES:
        from models.resolver import suggest

        raise _usage_error(f"--type {type_!r} is not one of {', '.join(ALL_RESOURCE_TYPES)}"
                           + suggest(type_, ALL_RESOURCE_TYPES))


@app.command()
def grants(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
           live: bool = typer.Option(False, "--live", help="Leave out grants deleted in JumpCloud."),
           as_json: bool = JsonOption, wide: bool = WideOption,
           output_: Optional[Output] = OutputOption) -> None:
    """Grants of a connector: group members, app access (direct or via a group), role assignments."""
    _use_config(config)
    from models import queries

    data = _connector_query(queries.grants, name, include_deleted=not live)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        _print_json(data)
        return
    output.print_rows(GRANT_COLUMNS, ((f"{g['resource_type']}:{g['resource_id']}", g["entitlement"],
                                       f"{g['principal_type']}:{g['principal_id']}", g["via"],
                                       "yes" if g["deleted"] else "") for g in data), shown)


GRANT_COLUMNS = (Col("resource", identity=True), Col("entitlement"), Col("principal", identity=True),
                 Col("via", identity=True, drop=1), Col("deleted", drop=2))


# --- provisioning ---------------------------------------------------------------------------------------------

ENDED_STATUSES = ("succeeded", "failed", "rejected")
#: Without --wait, a request in one of these states was accepted (a repeated idempotency key may find it done).
ACCEPTED_STATUSES = ("pending", "running", "succeeded")
MAX_TEXT = 256  # idempotency keys and requested_by, as the database stores them


class UserState(str, Enum):
    staged = "staged"
    activated = "activated"


class BulkFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class _WarningsToStderr(logging.Handler):
    """Shows the provisioning core's warnings (such as an enqueue the relay will have to do) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]warning:[/yellow] {escape(record.getMessage())}", highlight=False)


def _show_provisioning_warnings() -> None:
    logger = logging.getLogger("provisioning")
    if not any(isinstance(handler, _WarningsToStderr) for handler in logger.handlers):
        logger.addHandler(_WarningsToStderr(logging.WARNING))


def _status(status: str) -> str:
    colour = output.status_style(status)
    return f"[{colour}]{escape(status)}[/{colour}]"


def _requester(given: Optional[str]) -> str:
    if given:
        return given
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001  (no login name in some containers)
        user = "unknown"
    return f"cli:{user}"


def _usage_error(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _check_text(option: str, value: Optional[str]) -> None:
    if value is not None and not (0 < len(value) <= MAX_TEXT):
        raise _usage_error(f"{option} must be 1 to {MAX_TEXT} characters")


def _compact(data) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def _print_request(request: dict) -> None:
    """One request in a few lines: id and status, what it asks, then its result and error if any."""
    params = " ".join(f"{k}={v}" for k, v in sorted(request["params"].items())) if isinstance(
        request["params"], dict) else _compact(request["params"])
    console.print(f"request {escape(request['id'])} {_status(request['status'])}"
                  + (" (dry run)" if request.get("dry_run") else "")
                  + f": {escape(request['connector'])} {escape(request['action'])} {escape(params)}".rstrip())
    if request.get("result"):
        console.print(f"  result: {escape(_compact(request['result']))}")
    if request.get("last_error"):
        console.print(f"  error: {escape(request['last_error'])}")


def _finish_request(request: dict, *, waited: bool, timeout: float, as_json: bool) -> None:
    """Print a request and exit: with --wait, 0 only if it succeeded; without, 0 if it was accepted."""
    if as_json:
        _print_json(request)
    else:
        _print_request(request)
    if waited and request["status"] not in ENDED_STATUSES:
        err.print(f"[red]timed out[/red] after {timeout:g}s: request {escape(request['id'])} is still "
                  f"{escape(request['status'])}")
        raise typer.Exit(1)
    ok = request["status"] == "succeeded" if waited else request["status"] in ACCEPTED_STATUSES
    raise typer.Exit(0 if ok else 1)


def _parse_param_options(pairs: list[str], params: dict[str, str]) -> dict[str, str]:
    from worker.bulk import normalize_key

    out = dict(params)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = normalize_key(key)
        if not sep or not key:
            raise _usage_error(f"--param {pair!r} is not key=value")
        if key in out:
            raise _usage_error(f"parameter {key!r} is given twice")
        out[key] = value
    return out


def _param(help_text: str):
    return typer.Option(None, help=help_text, rich_help_panel="Parameters")


@app.command()
def provision(connector: str = typer.Argument(..., help="Connector name."),
              action: str = typer.Argument(..., help="One of: " + ", ".join(ACTION_NAMES) + "."),
              user: Optional[str] = _param("User account: id, email or username."),
              group: Optional[str] = _param("User group: id or name."),
              app_: Optional[str] = typer.Option(None, "--app", help="Application: id or name.",
                                                 rich_help_panel="Parameters"),
              admin: Optional[str] = _param("Admin account: id or email (role.set)."),
              role: Optional[str] = _param("Admin role name (role.set)."),
              email: Optional[str] = _param("Email of a new user (user.create)."),
              username: Optional[str] = _param("Username of a new user (user.create)."),
              state: Optional[UserState] = _param("State of a new user (user.create; default staged)."),
              firstname: Optional[str] = _param("user.create profile field."),
              lastname: Optional[str] = _param("user.create profile field."),
              displayname: Optional[str] = _param("user.create profile field."),
              department: Optional[str] = _param("user.create profile field."),
              job_title: Optional[str] = _param("user.create profile field."),
              employee_type: Optional[str] = _param("user.create profile field."),
              employee_id: Optional[str] = _param("user.create profile field."),
              company: Optional[str] = _param("user.create profile field."),
              cost_center: Optional[str] = _param("user.create profile field."),
              location: Optional[str] = _param("user.create profile field."),
              param: list[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                              help="Any parameter, repeatable (- in KEY reads as _).",
                                              rich_help_panel="Parameters"),
              wait: bool = typer.Option(False, "--wait", help="Wait for the outcome; exit 1 unless it succeeded."),
              timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
              idempotency_key: Optional[str] = typer.Option(
                  None, help="The same key again (for this connector) gives the same request, not a second one."),
              requested_by: Optional[str] = typer.Option(None, help="Who asks (default: cli:<your login name>)."),
              as_json: bool = typer.Option(False, "--json"),
              config: Optional[Path] = ConfigOption) -> None:
    """Ask for an access change; it is recorded, then applied to JumpCloud by a worker.

    Example: jumpsync provision acme group.add-member --group Engineering --user alice@example.com --wait
    """
    _use_config(config)
    _show_provisioning_warnings()
    if action not in ACTION_NAMES:
        from models.resolver import suggest

        raise _usage_error(f"unknown action {action!r}{suggest(action, ACTION_NAMES)}; known actions: "
                           f"{', '.join(ACTION_NAMES)}")
    _check_text("--idempotency-key", idempotency_key)
    _check_text("--requested-by", requested_by)
    named = {"user": user, "group": group, "app": app_, "admin": admin, "role": role, "email": email,
             "username": username, "state": state.value if state is not None else None, "firstname": firstname,
             "lastname": lastname, "displayname": displayname, "department": department, "job_title": job_title,
             "employee_type": employee_type, "employee_id": employee_id, "company": company,
             "cost_center": cost_center, "location": location}
    params = _parse_param_options(param, {k: v for k, v in named.items() if v is not None})
    from provisioning.api import submit_request

    request = submit_request(connector, action, params, idempotency_key=idempotency_key,
                             requested_by=_requester(requested_by), wait=wait, timeout=timeout)
    _finish_request(request, waited=wait, timeout=timeout, as_json=as_json)


requests_app = typer.Typer(help="List provisioning requests (newest first); show one; retry a failed one.")
app.add_typer(requests_app, name="requests")


@requests_app.callback(invoke_without_command=True)
def requests_list(ctx: typer.Context,
                  status: Optional[str] = typer.Option(None, help="pending, running, succeeded, failed or rejected."),
                  connector: Optional[str] = typer.Option(None, help="Only this connector's requests."),
                  action: Optional[str] = typer.Option(None, help="Only requests for this action, e.g. app.grant."),
                  limit: int = typer.Option(50, min=1, help="At most this many, newest first."),
                  as_json: bool = JsonOption, wide: bool = WideOption,
                  output_: Optional[Output] = OutputOption,
                  config: Optional[Path] = ConfigOption) -> None:
    """List provisioning requests, newest first (or: requests show ID, requests retry ID)."""
    if ctx.invoked_subcommand is not None:
        if config is not None:
            _use_config(config)
        return
    _use_config(config)
    from models.tables import REQUEST_STATUSES
    from provisioning import requests as prequests
    from worker import runtime

    from models.resolver import suggest

    if status is not None and status not in REQUEST_STATUSES:
        raise _usage_error(f"--status {status!r} is not one of {', '.join(REQUEST_STATUSES)}"
                           + suggest(status, REQUEST_STATUSES))
    if action is not None and action not in ACTION_NAMES:
        raise _usage_error(f"--action {action!r} is not an action{suggest(action, ACTION_NAMES)}")
    engine = runtime.engine()
    if connector is not None:
        connector = connector.lower()
        from sqlmodel import Session

        from models.queries import synced_connector_names

        with Session(engine) as session:
            known = {c.name for c in runtime.settings().connectors} | set(synced_connector_names(session))
        known |= set(prequests.connector_names(engine))
        if connector not in known:
            raise _usage_error(f"--connector {connector!r} is neither configured nor named by any request"
                               + suggest(connector, sorted(known)))
    data = prequests.listing(engine, status=status, connector=connector, action=action, limit=limit)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        _print_json(data)
        return
    output.print_rows(REQUEST_COLUMNS, ((r["id"], r["connector"], r["action"], r["status"], r["attempts"],
                                         r["created_at"], r["last_error"]) for r in data), shown)


#: At 80 columns: id, connector, action, status and when; ``requests show ID`` has the error in full.
REQUEST_COLUMNS = (Col("id", identity=True), Col("connector", identity=True), Col("action"),
                   Col("status", identity=True, style=output.status_style), Col("attempts", drop=2),
                   Col("created", time=True, drop=1), Col("error", wrap=True, drop=3))


def _get_request(request_id: str) -> dict:
    from provisioning import requests as prequests
    from worker import runtime

    request = prequests.get(runtime.engine(), request_id)
    if request is None:
        raise _usage_error(f"no provisioning request {request_id!r}")
    return request


@requests_app.command("show")
def requests_show(request_id: str = typer.Argument(..., metavar="ID"),
                  as_json: bool = typer.Option(False, "--json"),
                  config: Optional[Path] = ConfigOption) -> None:
    """One request with everything recorded about it."""
    _use_config(config)
    request = _get_request(request_id)
    if as_json:
        _print_json(request)
        return
    output.print_rows(FIELD_COLUMNS, ((key, _compact(value) if isinstance(value, (dict, list, bool)) else value)
                                      for key, value in request.items()), output.choose(), show_header=False)


FIELD_COLUMNS = (Col("field"), Col("value", wrap=True))


@requests_app.command("retry")
def requests_retry(request_id: str = typer.Argument(..., metavar="ID"),
                   wait: bool = typer.Option(False, "--wait", help="Wait for the outcome; exit 1 unless it succeeded."),
                   timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
                   as_json: bool = typer.Option(False, "--json"),
                   config: Optional[Path] = ConfigOption) -> None:
    """Put a failed request back to pending (attempts counted afresh) and send it to the workers."""
    _use_config(config)
    from provisioning import requests as prequests
    from provisioning.api import enqueue, wait_for_request
    from worker import runtime

    try:
        request = prequests.retry(runtime.engine(), request_id)
    except (LookupError, ValueError) as exc:
        raise _usage_error(str(exc)) from None
    _show_provisioning_warnings()
    enqueue(request["id"])  # when the broker cannot be reached, it warns; the request stays pending for the relay
    if wait:
        request = wait_for_request(request["id"], timeout)
    _finish_request(request, waited=wait, timeout=timeout, as_json=as_json)


def _read_bulk_file(file: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise _usage_error(f"{file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _usage_error(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


@app.command("provision-bulk")
def provision_bulk(file: Path = typer.Argument(..., help="CSV or JSON-lines file (- reads stdin; give --format)."),
                   fmt: Optional[BulkFormat] = typer.Option(
                       None, "--format", help="Default from the extension: .csv, or .jsonl/.ndjson/.json."),
                   wait: bool = typer.Option(False, "--wait",
                                             help="Wait for every outcome; exit 1 unless all succeeded."),
                   timeout: float = typer.Option(600.0, help="Seconds to wait for all of them with --wait."),
                   requested_by: Optional[str] = typer.Option(
                       None, help="For lines that name no requester (default: cli:<your login name>)."),
                   as_json: bool = typer.Option(False, "--json"),
                   config: Optional[Path] = ConfigOption) -> None:
    """Submit one request per CSV row or JSON line; each is recorded and tracked on its own.

    A line that cannot be read is reported with its number and does not stop the others (and is recorded as
    a rejected request when it names at least a connector and an action). Exit 0 only if every line was
    accepted (or, with --wait, succeeded).
    """
    _use_config(config)
    _show_provisioning_warnings()
    from worker import bulk

    _check_text("--requested-by", requested_by)
    chosen = fmt.value if fmt is not None else bulk.format_for(file.name)
    if chosen is None:
        raise _usage_error(f"cannot tell the format of {file} from its name; give --format csv or --format jsonl")
    parsed = bulk.parse(_read_bulk_file(file), chosen)
    if not parsed:
        raise _usage_error(f"{file}: no requests in it")
    outcomes = submit_bulk(parsed, source=str(file), requested_by=_requester(requested_by))
    if wait:
        from provisioning.api import wait_for_request

        deadline = time.monotonic() + timeout
        for outcome in outcomes:
            if outcome["request"] is not None and outcome["request"]["status"] not in ENDED_STATUSES:
                outcome["request"] = wait_for_request(outcome["request"]["id"], max(0.0, deadline - time.monotonic()))
    rows = [_bulk_row(o) for o in outcomes]
    summary: dict[str, int] = {}
    for row in rows:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    wanted = ("succeeded",) if wait else ACCEPTED_STATUSES
    ok = all(row["status"] in wanted for row in rows)
    if as_json:
        _print_json({"file": str(file), "ok": ok, "summary": summary, "requests": rows})
    else:
        shown = output.choose()
        output.print_rows(BULK_COLUMNS, ((row["line"], row["id"] or "-", row["status"], row["error"]) for row in rows),
                          shown)
        output.note(", ".join(f"{count} {status}" for status, count in sorted(summary.items())), shown)
    if wait and any(row["request"] and row["status"] not in ENDED_STATUSES for row in rows):
        err.print(f"[red]timed out[/red] after {timeout:g}s with requests still pending or running")
    raise typer.Exit(0 if ok else 1)


BULK_COLUMNS = (Col("line"), Col("request id", identity=True), Col("status", identity=True, style=output.status_style),
                Col("error", wrap=True))


def submit_bulk(parsed, *, source: str, requested_by: str) -> list[dict]:
    """Record every line (a request, or a rejected one for a line that named its connector and action), then
    enqueue the accepted ones. After the first enqueue that fails, the rest are left to the relay rather than
    waiting on an unreachable broker once per line."""
    from sqlalchemy.exc import SQLAlchemyError

    from provisioning import requests as prequests
    from provisioning.api import enqueue
    from worker import runtime
    from worker.bulk import BulkItem

    engine, settings = runtime.engine(), runtime.settings()
    outcomes: list[dict] = []
    to_send: list[str] = []
    for line_no, item in parsed:
        outcome = {"line": line_no, "request": None, "error": None}
        try:
            if isinstance(item, BulkItem):
                accepted = prequests.accept(engine, settings, connector=item.connector, action=item.action,
                                            params=item.params, idempotency_key=item.idempotency_key,
                                            requested_by=item.requested_by or requested_by)
                outcome["request"] = accepted.request
                if accepted.enqueue:
                    to_send.append(accepted.request["id"])
            elif item.recordable:
                body = {"requested_by": requested_by, **item.body}
                outcome["request"] = prequests.accept_malformed(engine, body, f"{source} line {line_no}: {item.message}")
            else:
                outcome["error"] = item.message
        except SQLAlchemyError as exc:
            outcome["error"] = f"could not be recorded: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        outcomes.append(outcome)
    for index, request_id in enumerate(to_send):
        if not enqueue(request_id):
            err.print(f"[yellow]warning:[/yellow] the broker could not be reached; {len(to_send) - index} "
                      "request(s) stay pending and the relay will send them")
            break
    return outcomes


def _bulk_row(outcome: dict) -> dict:
    request = outcome["request"]
    if request is None:
        return {"line": outcome["line"], "id": None, "status": "invalid", "error": outcome["error"], "request": None}
    return {"line": outcome["line"], "id": request["id"], "status": request["status"],
            "error": request["last_error"], "request": request}


@app.command()
def health(config: Optional[Path] = ConfigOption,
           worker_name: Optional[str] = typer.Option(None, "--worker", help="Also ping this worker (e.g. sync@$HOSTNAME)."),
           min_workers: int = typer.Option(0, help="Also require this many workers to answer."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the broker, the database (reachable and migrated) and optionally workers; exit 1 if any fails."""
    _use_config(config)
    from worker import runtime
    from worker.celery_app import app as celery_app
    from worker.health import run_checks

    result = run_checks(celery_app, runtime.settings().database_url, worker=worker_name, min_workers=min_workers)
    if as_json:
        _print_json(result)
    else:
        for name in ("broker", "database", "workers"):
            check = result[name]
            mark = "[green]ok[/green]" if check["ok"] else "[red]FAIL[/red]"
            detail = check.get("error") or check.get("skipped") or ", ".join(check.get("workers", []))
            console.print(f"{name:<9} {mark} {escape(detail)}")
    raise typer.Exit(0 if result["ok"] else 1)


app.add_typer(db_app, name="db")
app.add_typer(deletions_app, name="deletions")
app.command()(changes)

from worker.cli_access import access, export, report, who_has  # noqa: E402  (access insight, docs/access.md)

app.command()(access)
app.command("who-has")(who_has)
app.command()(report)
app.command()(export)
startup.imported()


#: Commands that are processes of a deployment (or ``up`` itself), not clients of one: they never take the
#: settings of an ``up`` running in the folder.
SERVER_COMMANDS = ("up", "worker", "beat", "flower", "simulator")


def _adopt_running_up(argv: list[str]) -> None:
    """A client command run in the folder of a running ``jumpsync up`` uses that run's broker, config and
    database (for those not set in the environment or by ``--config``), and says so on stderr."""
    from worker.up_state import adopt_running_up

    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None or command in SERVER_COMMANDS:
        return
    config_given = "--config" in argv or any(arg.startswith("--config=") for arg in argv)
    said = adopt_running_up(given=("JUMPSYNC_CONFIG",) if config_given else ())
    if said is not None:
        err.print(Text(said), highlight=False, soft_wrap=True)


def main() -> None:
    """The ``jumpsync`` entry point: operator errors become one clear line and exit code 2, not a traceback."""
    from models.migrate import SchemaOutOfDate

    startup.frozen()
    _adopt_running_up(sys.argv[1:])
    try:
        app()
    except (SchemaOutOfDate, ConfigError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
