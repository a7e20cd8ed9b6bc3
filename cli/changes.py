"""``jumpsync changes``: what changed in a connector's org, sync by sync."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import check_resource_type, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from config.settings import parse_duration
from config.words import plural
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
            limit: int = typer.Option(10000, help="At most this many changes (oldest first)."),
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
    drawn = output.drawn(shown)
    try:
        # A table reads only the rows it shows (rich draws about a thousand rows a second; --json and a pipe are
        # for long lists), and counts the others.
        rows = read_changes(runtime.engine(), name, since=after, resource_type=type_,
                            limit=min(limit, output.TABLE_ROWS) if drawn else limit)
        shown_all = not drawn or len(rows) < min(limit, output.TABLE_ROWS)
        total = len(rows) if shown_all else min(limit, count_changes(runtime.engine(), name, since=after,
                                                                     resource_type=type_))
    except UnknownConnector as exc:
        raise usage_error(str(exc)) from None
    if shown is Output.json:
        write_json_array(sys.stdout, rows)
        return
    if not total:
        output.note("no changes", shown)
        return
    output.print_rows(CHANGE_COLUMNS, (_change_row(row) for row in rows), shown)
    if total > len(rows):
        output.note(f"… and {plural(total - len(rows), 'more change')} (--json lists them all; --since and --type "
                    "narrow them down)", shown)


CHANGE_COLUMNS = (Col("at", time=True), Col("by", drop=2), Col("change"), Col("what", identity=True),
                  Col("details", wrap=True, drop=1))


def _change_row(row: dict) -> tuple:
    what = f"{row['resource_type']}:{row['resource_id']}"
    if row["subject"] == "grant":
        what += f" {row['entitlement']} {row['principal_type']}:{row['principal_id']}"
        what += f" via {row['via']}" if row["via"] else ""
    details = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in (row["fields"] or {}).items())
    by = f"run {row['run_id']}" if row["run_id"] else (f"request {row['request_id']}" if row["request_id"] else "")
    return row["at"], by, row["change"], what, details

