"""``jumpsync provision | provision-bulk``: ask for access changes; they are recorded, then applied by a worker.

The request printing and exit rules here are also those of ``jumpsync requests retry`` (cli.requests).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from cli import output
from cli.common import ConfigOption, print_json, usage_error, use_config
from cli.output import Col
from cli.waiting import task_failed
from config.actions import ACTION_NAMES, MAX_TEXT
from config.words import plural
from models.states import ENDED_REQUEST_STATUSES, RequestStatus

console = output.stdout()
err = output.stderr()

ENDED_STATUSES = ENDED_REQUEST_STATUSES
#: Without --wait, a request in one of these states was accepted (a repeated idempotency key may find it done).
ACCEPTED_STATUSES = (RequestStatus.PENDING, RequestStatus.RUNNING, RequestStatus.SUCCEEDED,
                     RequestStatus.AWAITING_APPROVAL)
#: The status a bulk line shows when it could not be read, nor recorded as a request.
INVALID_LINE = "invalid"


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


def show_provisioning_warnings() -> None:
    """Warnings of the provisioning core and of the submit interface (jumpsync.api), on stderr."""
    for name in ("provisioning", "jumpsync"):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, _WarningsToStderr) for handler in logger.handlers):
            logger.addHandler(_WarningsToStderr(logging.WARNING))


def _status(status: str) -> str:
    colour = output.status_style(status)
    return f"[{colour}]{escape(status)}[/{colour}]"


def _check_text(option: str, value: Optional[str]) -> None:
    if value is not None and not (0 < len(value) <= MAX_TEXT):
        raise usage_error(f"{option} must be 1 to {MAX_TEXT} characters")


def compact(data) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def _print_request(request: dict) -> None:
    """One request in a few lines: id and status, what it asks, then its result and error if any."""
    params = " ".join(f"{k}={v}" for k, v in sorted(request["params"].items())) if isinstance(
        request["params"], dict) else compact(request["params"])
    console.print(f"request {escape(request['id'])} {_status(request['status'])}"
                  + (" (dry run)" if request.get("dry_run") else "")
                  + f": {escape(request['connector'])} {escape(request['action'])} {escape(params)}".rstrip())
    if request.get("result"):
        console.print(f"  result: {escape(compact(request['result']))}")
    if request.get("last_error"):
        console.print(f"  error: {escape(request['last_error'])}")


def finish_request(request: dict, *, waited: bool, timeout: float, as_json: bool) -> None:
    """Print a request and exit: with --wait, 0 only if it succeeded; without, 0 if it was accepted."""
    if as_json:
        print_json(request)
    else:
        _print_request(request)
    if waited and request["status"] == RequestStatus.AWAITING_APPROVAL:
        err.print(f"request {escape(request['id'])} awaits approval: `jumpsync requests approve` by someone else "
                  "(or a token with approve:), then it is applied")
        raise typer.Exit(1)
    if waited and request["status"] not in ENDED_STATUSES:
        err.print(f"[red]timed out[/red] after {timeout:g}s: request {escape(request['id'])} is still "
                  f"{escape(request['status'])}")
        raise typer.Exit(1)
    ok = request["status"] == RequestStatus.SUCCEEDED if waited else request["status"] in ACCEPTED_STATUSES
    raise typer.Exit(0 if ok else 1)


def _parse_param_options(pairs: list[str], params: dict[str, str]) -> dict[str, str]:
    from provisioning.bulk import normalize_key

    out = dict(params)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = normalize_key(key)
        if not sep or not key:
            raise usage_error(f"--param {pair!r} is not key=value")
        if key in out:
            raise usage_error(f"parameter {key!r} is given twice")
        out[key] = value
    return out


def _param(help_text: str) -> typer.models.OptionInfo:
    """A parameter of the action, in the help's "Parameters" panel (a type's metadata: no call in a default)."""
    return typer.Option(help=help_text, rich_help_panel="Parameters")


def provision(connector: str = typer.Argument(..., help="Connector name."),
              action: str = typer.Argument(..., help="One of: " + ", ".join(ACTION_NAMES) + "."),
              user: Annotated[Optional[str], _param("User account: id, email or username.")] = None,
              group: Annotated[Optional[str], _param("User group: id or name.")] = None,
              app_: Optional[str] = typer.Option(None, "--app", help="Application: id or name.",
                                                 rich_help_panel="Parameters"),
              admin: Annotated[Optional[str], _param("Admin account: id or email (role.set).")] = None,
              role: Annotated[Optional[str], _param("Admin role name (role.set).")] = None,
              email: Annotated[Optional[str], _param("Email of a new user (user.create).")] = None,
              username: Annotated[Optional[str], _param("Username of a new user (user.create).")] = None,
              state: Annotated[Optional[UserState],
                               _param("State of a new user (user.create; default staged).")] = None,
              firstname: Annotated[Optional[str], _param("user.create profile field.")] = None,
              lastname: Annotated[Optional[str], _param("user.create profile field.")] = None,
              displayname: Annotated[Optional[str], _param("user.create profile field.")] = None,
              department: Annotated[Optional[str], _param("user.create profile field.")] = None,
              job_title: Annotated[Optional[str], _param("user.create profile field.")] = None,
              employee_type: Annotated[Optional[str], _param("user.create profile field.")] = None,
              employee_id: Annotated[Optional[str], _param("user.create profile field.")] = None,
              company: Annotated[Optional[str], _param("user.create profile field.")] = None,
              cost_center: Annotated[Optional[str], _param("user.create profile field.")] = None,
              location: Annotated[Optional[str], _param("user.create profile field.")] = None,
              param: list[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                              help="Any parameter, repeatable (- in KEY reads as _).",
                                              rich_help_panel="Parameters"),
              wait: bool = typer.Option(False, "--wait", help="Wait for the outcome; exit 1 unless it succeeded."),
              timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
              idempotency_key: Optional[str] = typer.Option(
                  None, help="The same key again (for this connector) gives the same request, not a second one."),
              on_behalf_of: Optional[str] = typer.Option(
                  None, help="Whom the change is asked for (a ticket's requester); recorded apart from who runs "
                             "the command (always cli:<your login name>)."),
              as_json: bool = typer.Option(False, "--json"),
              config: Optional[Path] = ConfigOption) -> None:
    """Ask for an access change; it is recorded, then applied to JumpCloud by a worker.

    Example: jumpsync provision acme group.add-member --group Engineering --user alice@example.com --wait
    """
    use_config(config)
    show_provisioning_warnings()
    if action not in ACTION_NAMES:
        from models.resolver import suggest

        raise usage_error(f"unknown action {action!r}{suggest(action, ACTION_NAMES)}; known actions: "
                          f"{', '.join(ACTION_NAMES)}")
    _check_text("--idempotency-key", idempotency_key)
    _check_text("--on-behalf-of", on_behalf_of)
    named = {"user": user, "group": group, "app": app_, "admin": admin, "role": role, "email": email,
             "username": username, "state": state.value if state is not None else None, "firstname": firstname,
             "lastname": lastname, "displayname": displayname, "department": department, "job_title": job_title,
             "employee_type": employee_type, "employee_id": employee_id, "company": company,
             "cost_center": cost_center, "location": location}
    params = _parse_param_options(param, {k: v for k, v in named.items() if v is not None})
    from auth.local import cli_requester
    from config.settings import ConfigError
    from jumpsync.api import submit_as
    from provisioning.params import InvalidRequest
    from worker.waiting import TaskFailed

    try:
        request = submit_as(cli_requester(), connector, action, params, idempotency_key=idempotency_key,
                            on_behalf_of=on_behalf_of, wait=wait, timeout=timeout)
    except (ConfigError, InvalidRequest) as exc:  # a usage error: refused before anything is recorded
        raise usage_error(str(exc)) from None
    except TaskFailed as exc:
        raise task_failed(f"the {action} request on {connector}", exc) from None
    finish_request(request, waited=wait, timeout=timeout, as_json=as_json)


def _read_bulk_file(file: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise usage_error(f"{file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise usage_error(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def provision_bulk(file: Path = typer.Argument(..., help="CSV or JSON-lines file (- reads stdin; give --format)."),
                   fmt: Optional[BulkFormat] = typer.Option(
                       None, "--format", help="Default from the extension: .csv, or .jsonl/.ndjson/.json."),
                   wait: bool = typer.Option(False, "--wait",
                                             help="Wait for every outcome; exit 1 unless all succeeded."),
                   timeout: float = typer.Option(600.0, help="Seconds to wait for all of them with --wait."),
                   on_behalf_of: Optional[str] = typer.Option(
                       None, help="Whom the changes are asked for, for lines that name no on_behalf_of (who "
                                  "submits is always cli:<your login name>)."),
                   as_json: bool = typer.Option(False, "--json"),
                   config: Optional[Path] = ConfigOption) -> None:
    """Submit one request per CSV row or JSON line; each is recorded and tracked on its own.

    A line that cannot be read is reported with its number and does not stop the others (and is recorded as
    a rejected request when it names at least a connector and an action). Exit 0 only if every line was
    accepted (or, with --wait, succeeded). A file that names requested_by is refused whole (exit 2, nothing
    recorded): who submits is recorded by the command; a line may give on_behalf_of.
    """
    use_config(config)
    show_provisioning_warnings()
    from provisioning import bulk

    _check_text("--on-behalf-of", on_behalf_of)
    chosen = fmt.value if fmt is not None else bulk.format_for(file.name)
    if chosen is None:
        raise usage_error(f"cannot tell the format of {file} from its name; give --format csv or --format jsonl")
    try:
        parsed = bulk.parse(_read_bulk_file(file), chosen)
    except bulk.RequesterInFile as exc:
        raise usage_error(f"{file} {exc}") from None
    if not parsed:
        raise usage_error(f"{file}: no requests in it")
    from auth.local import cli_requester

    outcomes = submit_bulk(parsed, source=str(file), requested_by=cli_requester(), on_behalf_of=on_behalf_of,
                           keep_results=wait)
    if wait:
        deadline = time.monotonic() + timeout
        for outcome in outcomes:
            if outcome["request"] is not None and outcome["request"]["status"] not in ENDED_STATUSES:
                _wait_bulk(outcome, max(0.0, deadline - time.monotonic()))
    rows = [_bulk_row(o) for o in outcomes]
    summary: dict[str, int] = {}
    for row in rows:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    wanted = (RequestStatus.SUCCEEDED,) if wait else ACCEPTED_STATUSES
    ok = all(row["status"] in wanted for row in rows)
    if as_json:
        print_json({"file": str(file), "ok": ok, "summary": summary, "requests": rows})
    else:
        shown = output.choose()
        output.print_rows(BULK_COLUMNS, ((row["line"], row["id"] or "-", row["status"], row["error"]) for row in rows),
                          shown)
        output.note(", ".join(f"{count} {status}" for status, count in sorted(summary.items())), shown)
    if wait and any(row["status"] == RequestStatus.AWAITING_APPROVAL for row in rows):
        err.print("some requests await approval (jumpsync requests --status awaiting_approval)")
    if wait and any(row["request"] and row["status"] not in (*ENDED_STATUSES, RequestStatus.AWAITING_APPROVAL)
                    for row in rows):
        err.print(f"[red]timed out[/red] after {timeout:g}s with requests still pending or running")
    raise typer.Exit(0 if ok else 1)


BULK_COLUMNS = (Col("line"), Col("request id"), Col("status", style=output.status_style),
                Col("error", wrap=True))


def submit_bulk(parsed, *, source: str, requested_by: str, on_behalf_of: Optional[str] = None,
                keep_results: bool = False) -> list[dict]:
    """Record every line (a request, or a rejected one for a line that named its connector and action), then
    enqueue the accepted ones. After the first enqueue that fails, the rest are left to the relay rather than
    waiting on an unreachable broker once per line."""
    from sqlalchemy.exc import SQLAlchemyError

    from jumpsync.api import enqueue
    from provisioning import requests as prequests
    from provisioning.bulk import BulkItem
    from worker import runtime

    engine, settings = runtime.engine(), runtime.settings()
    outcomes: list[dict] = []
    to_send: list[dict] = []
    for line_no, item in parsed:
        outcome = {"line": line_no, "request": None, "error": None}
        try:
            if isinstance(item, BulkItem):
                accepted = prequests.accept(engine, settings, connector=item.connector, action=item.action,
                                            params=item.params, idempotency_key=item.idempotency_key,
                                            requested_by=requested_by,
                                            on_behalf_of=item.on_behalf_of or on_behalf_of)
                outcome["request"] = accepted.request
                if accepted.enqueue:
                    to_send.append(outcome)
            elif item.recordable:
                body = {**item.body, "requested_by": requested_by}
                outcome["request"] = prequests.accept_malformed(engine, body, f"{source} line {line_no}: {item.message}",
                                                                on_behalf_of=_said_for(item.body, on_behalf_of))
            else:
                outcome["error"] = item.message
        except SQLAlchemyError as exc:
            outcome["error"] = f"could not be recorded: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        outcomes.append(outcome)
    for index, outcome in enumerate(to_send):
        outcome["task_id"] = enqueue(outcome["request"]["id"], keep_result=keep_results)
        if outcome["task_id"] is None:
            left = len(to_send) - index
            err.print(f"[yellow]warning:[/yellow] the broker could not be reached; {plural(left, 'request')} "
                      f"{'stays' if left == 1 else 'stay'} pending and the relay will send "
                      f"{'it' if left == 1 else 'them'}")
            break
    return outcomes


def _wait_bulk(outcome: dict, timeout: float) -> None:
    """Wait for one line's request; a failed apply task is that line's error (its request not ended)."""
    from jumpsync.api import wait_for_request
    from provisioning import requests as prequests
    from worker import runtime
    from worker.waiting import TaskFailed

    request_id = outcome["request"]["id"]
    try:
        outcome["request"] = wait_for_request(request_id, timeout, task_id=outcome.get("task_id"))
    except TaskFailed as exc:
        outcome["request"] = prequests.get(runtime.engine(), request_id) or outcome["request"]
        outcome["error"] = f"the apply task failed: {exc}"


def _said_for(body: dict, default: Optional[str]) -> Optional[str]:
    """A line's on_behalf_of if it is one that can be recorded, else the command's."""
    value = body.get("on_behalf_of")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else default


def _bulk_row(outcome: dict) -> dict:
    request = outcome["request"]
    if request is None:
        return {"line": outcome["line"], "id": None, "status": INVALID_LINE, "error": outcome["error"], "request": None}
    return {"line": outcome["line"], "id": request["id"], "status": request["status"],
            "error": outcome["error"] or request["last_error"], "request": request}
