"""``jumpsync requests [show ID | retry ID | approve ID | deny ID]``: the provisioning requests, as recorded,
and the approvers' decisions on those that await approval (provisioning.approvals)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import ConfigOption, print_json, requests_connector, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.provision import compact, finish_request, show_provisioning_warnings
from cli.waiting import task_failed
from config.actions import ACTION_NAMES
from config.words import plural

IdArgument = typer.Argument(..., metavar="ID", help="The request's id, or 8 or more of its first characters.")

requests_app = typer.Typer(help="List provisioning requests (newest first); show one; retry a failed one; "
                                "approve or deny one that awaits approval.")


@requests_app.callback(invoke_without_command=True)
def requests_list(ctx: typer.Context,
                  status: Optional[str] = typer.Option(
                      None, help="pending, running, succeeded, failed, rejected, awaiting_approval, denied or "
                                 "expired."),
                  connector: Optional[str] = typer.Option(None, help="Only this connector's requests."),
                  action: Optional[str] = typer.Option(None, help="Only requests for this action, e.g. app.grant."),
                  limit: Optional[int] = typer.Option(None, min=1, help="At most this many, newest first; default "
                                                                        "all."),
                  as_json: bool = JsonOption, wide: bool = WideOption,
                  output_: Optional[Output] = OutputOption,
                  config: Optional[Path] = ConfigOption) -> None:
    """List provisioning requests, newest first (or: requests show ID | retry ID | approve ID | deny ID)."""
    if ctx.invoked_subcommand is not None:
        if config is not None:
            use_config(config)
        return
    use_config(config)
    from models.resolver import suggest
    from models.states import RequestStatus
    from provisioning import requests as prequests
    from worker import runtime

    statuses = [state.value for state in RequestStatus]
    if status is not None and status not in statuses:
        raise usage_error(f"--status {status!r} is not one of {', '.join(statuses)}" + suggest(status, statuses))
    if action is not None and action not in ACTION_NAMES:
        raise usage_error(f"--action {action!r} is not an action{suggest(action, ACTION_NAMES)}")
    engine = runtime.engine()
    if connector is not None:
        connector = requests_connector(connector)
    data = prequests.listing(engine, status=RequestStatus(status) if status else None, connector=connector,
                             action=action, limit=limit)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json(data)
        return
    from provisioning.targets import targets

    rows = output.rows_shown(data, shown)
    output.print_rows(REQUEST_COLUMNS, ((r["id"], r["connector"], r["action"], r["status"], target, r["attempts"],
                                         r["created_at"], r["last_error"])
                                        for r, target in zip(rows, targets(engine, rows), strict=True)), shown)
    if len(data) > len(rows):
        output.note(f"… and {plural(len(data) - len(rows), 'more request')} (--json lists them all; --status, "
                    "--connector and --limit narrow them down)", shown)


#: At 80 columns: id, connector, action, status and what it targets (when, if room); ``requests show ID`` has the
#: error in full.
REQUEST_COLUMNS = (Col("id"), Col("connector", category=True), Col("action"), Col("status", style=output.status_style),
                   Col("target", wrap=True, drop=1), Col("attempts", drop=3), Col("created", time=True, drop=2),
                   Col("error", wrap=True, drop=4))


def full_request_id(ref: str) -> str:
    """The id of the request ``ref`` names: its id, or a unique prefix of 8 or more characters (as git takes a
    commit's); exit 2 naming the problem otherwise."""
    from provisioning import requests as prequests
    from worker import runtime

    try:
        return prequests.full_id(runtime.engine(), ref)
    except LookupError as exc:
        raise usage_error(str(exc)) from None


def _get_request(request_id: str) -> dict:
    from provisioning import approvals
    from worker import runtime

    request = approvals.detail(runtime.engine(), full_request_id(request_id))
    if request is None:
        raise usage_error(f"no provisioning request {request_id!r}")
    return request


@requests_app.command("show")
def requests_show(request_id: str = IdArgument,
                  as_json: bool = typer.Option(False, "--json"),
                  config: Optional[Path] = ConfigOption) -> None:
    """One request with everything recorded about it."""
    use_config(config)
    request = _get_request(request_id)
    if as_json:
        print_json(request)
        return
    _print_fields(request)


def _print_fields(request: dict) -> None:
    """The request's fields, one a line; then its approvers' decisions, if it needed approval."""
    decisions = request.get("decisions")
    fields = {key: value for key, value in request.items() if key != "decisions"}
    output.print_rows(FIELD_COLUMNS, ((key, compact(value) if isinstance(value, (dict, list, bool)) else value)
                                      for key, value in fields.items()), output.choose(), show_header=False)
    if decisions is not None:
        output.print_rows(DECISION_COLUMNS, ((d["decision"], d["decided_by"], d["decided_at"], d["comment"])
                                             for d in decisions), output.choose())


FIELD_COLUMNS = (Col("field"), Col("value", wrap=True))
DECISION_COLUMNS = (Col("decision"), Col("decided by"), Col("at", time=True),
                    Col("comment", wrap=True, drop=1))


@requests_app.command("retry")
def requests_retry(request_id: str = IdArgument,
                   wait: bool = typer.Option(False, "--wait", help="Wait for the outcome; exit 1 unless it succeeded."),
                   timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
                   as_json: bool = typer.Option(False, "--json"),
                   config: Optional[Path] = ConfigOption) -> None:
    """Put a failed request back to pending (attempts counted afresh) and send it to the workers."""
    use_config(config)
    from auth.local import cli_requester
    from jumpsync.api import enqueue, wait_for_request
    from provisioning import requests as prequests
    from worker import runtime

    try:
        request = prequests.retry(runtime.engine(), full_request_id(request_id), cli_requester())
    except (LookupError, ValueError) as exc:
        raise usage_error(str(exc)) from None
    show_provisioning_warnings()
    task_id = enqueue(request["id"], keep_result=wait)  # an unreachable broker: it warns; the request stays pending for the relay
    if wait:
        from worker.waiting import TaskFailed

        try:
            request = wait_for_request(request["id"], timeout, task_id=task_id)
        except TaskFailed as exc:
            raise task_failed(f"request {request['id']}", exc) from None
    finish_request(request, waited=wait, timeout=timeout, as_json=as_json)


CommentOption = typer.Option(None, "--comment", help="Why, recorded with the decision (up to 2000 characters).")


def _decide(request_id: str, comment: Optional[str], as_json: bool, decision: str) -> None:
    """Record the decision as ``cli:<login>`` (auth.local), print the request and its decisions; exit 2 when it
    is refused (unknown id, not awaiting approval, own request, decided already)."""
    from auth.local import cli_requester
    from jumpsync.api import approve_request, deny_request
    from provisioning.approvals import ApprovalError

    show_provisioning_warnings()
    decide = approve_request if decision == "approve" else deny_request
    try:
        request = decide(full_request_id(request_id), cli_requester(), comment)
    except ApprovalError as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        print_json(request)
        return
    _print_fields(request)


@requests_app.command("approve")
def requests_approve(request_id: str = IdArgument, comment: Optional[str] = CommentOption,
                     as_json: bool = typer.Option(False, "--json"),
                     config: Optional[Path] = ConfigOption) -> None:
    """Approve a request that awaits approval (as cli:<login>; not your own). With enough approvers it is sent
    to the workers."""
    use_config(config)
    _decide(request_id, comment, as_json, "approve")


@requests_app.command("deny")
def requests_deny(request_id: str = IdArgument, comment: Optional[str] = CommentOption,
                  as_json: bool = typer.Option(False, "--json"),
                  config: Optional[Path] = ConfigOption) -> None:
    """Deny a request that awaits approval (as cli:<login>): it is never applied."""
    use_config(config)
    _decide(request_id, comment, as_json, "deny")

