"""``jumpsync changes``: what changed in a connector's org, sync by sync."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import check_resource_type, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from config.settings import parse_duration
from models.columns import as_utc

err = output.stderr()


def parse_since(text: str) -> datetime:
    """An ISO time (2026-11-01, 2026-11-01T08:00Z) or an age (24h, 7d, 30m)."""
    try:
        return datetime.now(timezone.utc) - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an ISO time (2026-11-01T08:00Z) nor an age (24h, 7d)") from None
    return as_utc(value)  # a time given without an offset is UTC, as the database keeps it


def changes(name: str = typer.Argument(..., help="Connector name."),
            config: Optional[Path] = typer.Option(None, "--config", help="Config file."),
            since: Optional[str] = typer.Option(None, help="From this ISO time or age (24h, 7d)."),
            type_: Optional[str] = typer.Option(None, "--type", help="Only this resource type."),
            limit: Optional[int] = typer.Option(None, min=1, help="At most this many changes (oldest first); "
                                                                  "default all."),
            as_json: bool = JsonOption, wide: bool = WideOption,
            output_: Optional[Output] = OutputOption) -> None:
    """Resources and grants created, updated (fields old → new), deleted and undeleted, by sync or request."""
    from access.render import write_json_array
    from models.history import changes as read_changes
    from models.history import count_changes
    from models.queries import UnknownConnector
    from worker import runtime

    use_config(config)
    check_resource_type(type_)
    after = parse_since(since) if since else None
    shown = output.choose(output_, wide=wide, as_json=as_json)
    # A table at a terminal reads only the rows it shows (rich draws about a thousand rows a second), and counts
    # the others; a pipe and a machine format get every row (or the --limit asked for).
    cap = output.TABLE_ROWS if output.capped(shown) else None
    read = limit if cap is None else min(cap, limit or cap)
    try:
        rows = read_changes(runtime.engine(), name, since=after, resource_type=type_, limit=read)
        cut = cap is not None and len(rows) == read and read != limit  # the table's cap ended the list, not --limit
        total = min(limit or sys.maxsize, count_changes(runtime.engine(), name, since=after,
                                                        resource_type=type_)) if cut else len(rows)
    except UnknownConnector as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    if shown is Output.json:
        write_json_array(sys.stdout, rows)
        return
    if not total:
        output.note("no changes", shown)
        return
    output.print_rows(CHANGE_COLUMNS, (_change_row(row) for row in rows), shown)
    if total > len(rows):
        output.note(f"… and {total - len(rows):,} more changes (--json lists them all; --since and --type "
                    "narrow them down)", shown)


CHANGE_COLUMNS = (Col("at", time=True), Col("by", drop=2), Col("change", category=True), Col("what", wrap=True),
                  Col("details", wrap=True, drop=1))


def _change_row(row: dict) -> tuple:
    what = f"{row['resource_type']}:{row['resource_id']}"
    if row["subject"] == "grant":
        what += f" {row['entitlement']} {row['principal_type']}:{row['principal_id']}"
        what += f" via {row['via']}" if row["via"] else ""
    details = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in (row["fields"] or {}).items())
    by = f"run {row['run_id']}" if row["run_id"] else (f"request {row['request_id']}" if row["request_id"] else "")
    return row["at"], by, row["change"], what, details

