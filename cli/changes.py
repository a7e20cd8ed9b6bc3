"""``jumpsync changes``: what changed in a connector's org, sync by sync."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cli import output
from cli.common import check_resource_type, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.refs import named
from config.settings import parse_duration
from config.words import plural
from models.columns import as_utc

if TYPE_CHECKING:
    from models.read_records import BaselineRecord

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
    from models.history import baselines, count_changes
    from models.history import changes as read_changes
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
        raise usage_error(str(exc)) from None
    if shown is Output.json:
        write_json_array(sys.stdout, rows)
        return
    # The JSON above is the recorded changes only; a table or pipe also says what each baseline stored.
    starts = baselines(runtime.engine(), name, since=after, resource_type=type_)
    for baseline in starts:  # where history starts comes first, as the list is oldest first
        output.note(baseline_note(baseline, cap is not None), shown)
    if not total:
        output.note(f"no changes since run {starts[-1].run_id}" if starts else "no changes", shown)
        return
    ids = shown is not Output.table  # wide and tsv carry the ids beside the names (cli.refs)
    output.print_rows(CHANGE_COLUMNS, (_change_row(row, ids) for row in rows), shown)
    if total > len(rows):
        output.note(f"… and {plural(total - len(rows), 'more change')} (--json lists them all; --since and --type "
                    "narrow them down)", shown)


CHANGE_COLUMNS = (Col("at", time=True), Col("by", drop=2), Col("change", category=True), Col("what", wrap=True),
                  Col("details", wrap=True, drop=1))


def _change_row(row: dict, ids: bool) -> tuple:
    what = named(row["resource_type"], row["resource_id"], row["resource_name"], with_id=ids)
    if row["subject"] == "grant":
        what += f" {row['entitlement']} " + named(row["principal_type"], row["principal_id"], row["principal_name"],
                                                   with_id=ids)
        what += " via " + named("group", row["via"], row["via_name"], with_id=ids) if row["via"] else ""
    details = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in (row["fields"] or {}).items())
    by = f"run {row['run_id']}" if row["run_id"] else (f"request {row['request_id']}" if row["request_id"] else "")
    return row["at"], by, row["change"], what, details


def baseline_note(baseline: BaselineRecord, drawn: bool) -> str:
    """What a first sync stored, which history does not list: ``first sync (run 1, 09:13:43) stored 500
    users, 12 groups and 830 grants: history starts there ...``. An operator must not read "no changes" when
    500 accounts appeared."""
    later = ", ".join(_plural(t) for t in baseline.types) or "grants"  # a type added to the connector later
    what = "first sync" if baseline.first else f"first sync of {later}"
    when = output.short_time(baseline.started_at) if drawn else output.full_time(baseline.started_at)
    counts = [f"{n:,} {_plural(t) if n != 1 else t}" for t, n in baseline.resources.items()]
    counts += [f"{baseline.grants:,} grant{'s' if baseline.grants != 1 else ''}"] if baseline.grants else []
    stored = ", ".join(counts[:-1]) + " and " + counts[-1] if len(counts) > 1 else "".join(counts)
    return f"{what} (run {baseline.run_id}, {when}) stored {stored}: history starts there (resources and grants list them)"


def _plural(resource_type: str) -> str:
    return resource_type + "s"
