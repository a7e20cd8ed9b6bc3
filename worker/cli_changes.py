"""``jumpsync changes``: what changed in a connector's org, sync by sync."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from worker.render import cell
from worker.settings import ALL_RESOURCE_TYPES, parse_duration

console = Console()
err = Console(stderr=True)


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
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def changes(name: str = typer.Argument(..., help="Connector name."),
            config: Optional[Path] = typer.Option(None, "--config", help="Config file."),
            since: Optional[str] = typer.Option(None, help="From this ISO time or age (24h, 7d)."),
            type_: Optional[str] = typer.Option(None, "--type", help="Only this resource type."),
            limit: int = typer.Option(10000, help="At most this many changes (oldest first)."),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Resources and grants created, updated (fields old → new), deleted and undeleted, by sync or request."""
    from models.history import changes as read_changes
    from models.history import count_changes
    from worker.access_output import write_json_array
    from models.queries import UnknownConnector
    from worker import runtime
    from worker.cli import _use_config

    _use_config(config)
    if type_ is not None and type_ not in ALL_RESOURCE_TYPES:
        err.print(f"error: --type {type_!r} is not one of {', '.join(ALL_RESOURCE_TYPES)}")
        raise typer.Exit(2)
    after = parse_since(since) if since else None
    try:
        # A table reads only the rows it shows (rich draws about a thousand rows a second; --json is for long
        # lists), and counts the others.
        rows = read_changes(runtime.engine(), name, since=after, resource_type=type_,
                            limit=limit if as_json else min(limit, TABLE_ROWS))
        shown_all = as_json or len(rows) < min(limit, TABLE_ROWS)
        total = len(rows) if shown_all else min(limit, count_changes(runtime.engine(), name, since=after,
                                                                     resource_type=type_))
    except UnknownConnector as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        write_json_array(sys.stdout, rows)
        return
    table = Table("at", "by", "change", "what", "details")
    for row in rows:
        what = f"{row['resource_type']}:{row['resource_id']}"
        if row["subject"] == "grant":
            what += f" {row['entitlement']} {row['principal_type']}:{row['principal_id']}"
            what += f" via {row['via']}" if row["via"] else ""
        details = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in (row["fields"] or {}).items())
        by = f"run {row['run_id']}" if row["run_id"] else (f"request {row['request_id']}" if row["request_id"] else "")
        table.add_row(row["at"][:19].replace("T", " "), by, row["change"], cell(what), cell(details, limit=200))
    console.print(table if total else "no changes")
    if total > len(rows):
        console.print(f"… and {total - len(rows):,} more changes (--json lists them all; --since and --type "
                      "narrow them down)")


#: Changes a table shows at most.
TABLE_ROWS = 200
