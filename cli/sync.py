"""``jumpsync sync | status``: start a sync now, and what every connector's last run did."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.text import Text

from cli import output
from cli.common import ConfigOption, print_json, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption, cell
from cli.waiting import wait_or_exit
from config.settings import ConfigError
from config.words import plural
from models.states import RefreshOutcome, RunStatus, Trigger
from worker.names import Priority, TaskName

if TYPE_CHECKING:
    from models.read_records import ConnectorStatus, RefreshRecord, RunRecord

console = output.stdout()
err = output.stderr()


def sync(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
         wait: bool = typer.Option(False, "--wait", help="Wait for the run (or refresh) to end; exit 1 unless it "
                                   "succeeded (with --events: quiet or applied)."),
         timeout: float = typer.Option(3600, help="Seconds to wait with --wait."),
         as_json: bool = typer.Option(False, "--json"),
         events: bool = typer.Option(False, "--events", help="An incremental refresh from the connector's "
                                     "Directory Insights events instead of a full sync.")) -> None:
    """Trigger a full sync of one connector now, or with --events an incremental refresh."""
    use_config(config)
    from models import queries
    from worker import runtime
    from worker.waiting import send

    try:
        connector = runtime.settings().connector(name)
    except ConfigError as exc:
        raise usage_error(str(exc)) from None
    name = connector.name  # as configured: ``DEMO`` is ``demo``
    if events:
        refresh_now(name, connector.events, wait, timeout, as_json)
        return
    task_id = send(TaskName.SYNC_CONNECTOR, name, trigger=Trigger.MANUAL, priority=Priority.ASKED)
    if not wait:
        print_json({"task_id": task_id}) if as_json else console.print(f"queued sync of {name} (task {task_id})")
        return
    run = wait_or_exit(lambda: queries.ended_run(runtime.engine(), task_id), task_id, timeout, f"the sync of {name}")
    if as_json:
        print_json(run.to_json())
    else:
        print_run(name, run)
    raise typer.Exit(0 if run.status is RunStatus.SUCCEEDED else 1)


def refresh_now(name: str, enabled: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """``sync --events``: send the incremental refresh beat would send, and with ``--wait`` print what it did."""
    from datetime import datetime, timezone

    from models import queries
    from worker import runtime
    from worker.waiting import send

    if not enabled:
        err.print(f"[red]error:[/red] connector {name!r} has events = false: no incremental refresh")
        raise typer.Exit(2)
    since = datetime.now(timezone.utc)
    task_id = send(TaskName.SYNC_EVENTS, name, priority=Priority.ASKED)
    if not wait:
        print_json({"task_id": task_id}) if as_json else console.print(f"queued refresh of {name} (task {task_id})")
        return
    refresh = wait_or_exit(lambda: queries.refresh_since(runtime.engine(), name, since), task_id, timeout,
                           f"the refresh of {name}", nothing_recorded=_no_refresh)
    if as_json:
        print_json(refresh.to_json())
    else:
        outcome = str(refresh.outcome)
        line = Text(f"{name}: refresh ") + Text(outcome, style=output.status_style(outcome))
        details = (f" — {plural(refresh.requests, 'request')}, {plural(refresh.events, 'new event')}, "
                   f"{refresh.reads:,} read back")
        console.print(line + cell(details + (f": {refresh.reason}" if refresh.reason else "")))
    raise typer.Exit(0 if refresh.outcome in (RefreshOutcome.QUIET, RefreshOutcome.APPLIED) else 1)


def _no_refresh(result: Any) -> str:
    """Why a refresh task that succeeded recorded no refresh: the workers' settings have no events for the
    connector (``events = false``, or a connector they do not know)."""
    outcome = result.get("outcome") if isinstance(result, dict) else None
    if outcome == "off":
        return "the workers ran no refresh: their settings have events off or do not know this connector"
    return f"the workers recorded no refresh (outcome {outcome})"


RUN_PARTS = (Col("part"), Col("status", style=output.status_style), Col("requests", drop=2),
             Col("counts", wrap=True, drop=3), Col("error", wrap=True, drop=1))


def print_run(name: str, run: RunRecord) -> None:
    """A run's outcome, then a table of its parts."""
    line = Text(f"{name}: run {run.id} ") + Text(run.status, style=output.status_style(run.status))
    console.print(line + cell(f" — {run.error}" if run.error else ""))
    if run.parts:
        output.print_rows(RUN_PARTS, ((part.name, part.status, part.requests,
                                       ", ".join(f"{k}={v}" for k, v in sorted(part.counts.items())),
                                       part.error) for part in run.parts), output.choose())


def status(config: Optional[Path] = ConfigOption, as_json: bool = JsonOption, wide: bool = WideOption,
           output_: Optional[Output] = OutputOption) -> None:
    """Connectors: last run and its outcome, next scheduled sync, live counts, pending provisioning."""
    use_config(config)
    from jumpsync.status import connector_status_records

    records = connector_status_records()
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json([entry.to_json() | extra for entry, extra in records])
        return
    rows = (_status_row(entry, extra, shown) for entry, extra in records)
    output.print_rows(STATUS_COLUMNS, rows, shown)


def _status_row(entry: ConnectorStatus, extra: dict[str, Any], shown: Output) -> tuple:
    run = entry.last_run
    return (entry.connector + ("" if entry.configured else " (not configured)"),
            f"{run.status} #{run.id}" if run else "never", run.finished_at if run else None,
            entry.last_success_at, extra["next_sync_at"] or "unknown",
            ", ".join(f"{k}={v}" for k, v in sorted(entry.resources.items())), entry.grants,
            ", ".join(f"{k}={v}" for k, v in sorted(entry.provisioning.items())),
            _incremental(extra["events"], entry.incremental, shown), _rendering(extra["access_rendering"], shown),
            run.error if run else None)


#: At 80 columns: connector, last run, finished, next sync and the error (the others are left out in this order).
STATUS_COLUMNS = (Col("connector", wrap=True), Col("last run", style=output.status_style),
                  Col("finished", time=True, drop=2), Col("last success", time=True, drop=7),
                  Col("next sync", time=True, drop=3), Col("resources", wrap=True, drop=8), Col("grants", drop=4),
                  Col("provisioning", wrap=True, drop=6), Col("events", wrap=True, drop=5),
                  Col("report/export", wrap=True, drop=9), Col("error", wrap=True, drop=1))


#: Refresh outcomes whose reason ``status`` shows.
_EXPLAINED = (RefreshOutcome.FAILED, RefreshOutcome.FULL_SYNC, RefreshOutcome.WAITING, RefreshOutcome.SKIPPED)


def _incremental(events: bool, last: RefreshRecord | None, shown: Output) -> str:
    """The last incremental refresh: its outcome and when, the lag of what it applied, and the cursor
    (docs/incremental.md)."""
    if not events:
        return "off"
    if last is None or last.refreshed_at is None:
        return "never"
    when = output.full_time if shown is Output.tsv else output.short_time
    text = f"{last.outcome} {when(last.refreshed_at)}"
    if last.lag_seconds is not None:
        text += f", lag {last.lag_seconds:.0f}s"
    if last.cursor is not None:
        text += f", cursor {when(last.cursor)}"
    if last.outcome in _EXPLAINED and last.reason:
        text += f": {last.reason}"
    return text


def _rendering(state: dict | None, shown: Output) -> str:
    """The stored report and export: rendered when, and whether the commands serve it (docs/access.md)."""
    if state is None:
        return "never rendered"
    at = output.full_time(state["rendered_at"]) if shown is Output.tsv else output.short_time(state["rendered_at"])
    return f"{'current' if state['current'] else 'stale'}, {at}"
