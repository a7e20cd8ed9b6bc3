"""``jumpsync audit``: who submitted, approved, denied and retried provisioning requests, and what came of it.

A table at a terminal, TSV in a pipe, ``-o json|csv`` as every listing (cli.output); ``--jsonl`` writes one JSON
object a line, for a SIEM to ingest (provisioning.audit).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import ConfigOption, requests_connector, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption


def _time(option: str, text: Optional[str], *, age: bool) -> Optional[datetime]:
    """An ISO time (or, when ``age``, an age like 24h) given to ``option``; a usage error naming it if neither."""
    from cli.changes import parse_since
    from models.columns import as_utc

    if text is None:
        return None
    try:
        if age:
            return parse_since(text)
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (typer.BadParameter, ValueError):
        accepted = "an ISO time (2026-11-01T08:00Z) or an age (24h, 7d)" if age else "an ISO time (2026-11-01T08:00Z)"
        raise usage_error(f"{option} {text!r} is not {accepted}") from None


AUDIT_COLUMNS = (Col("at", time=True), Col("event", category=True), Col("request"), Col("connector", category=True, drop=2),
                 Col("action", drop=3), Col("actor"), Col("on behalf of", drop=4),
                 Col("detail", wrap=True, drop=1))


def audit(connector: Optional[str] = typer.Option(None, "--connector", help="Only this connector's requests."),
          since: Optional[str] = typer.Option(None, help="From this ISO time or age (24h, 7d)."),
          until: Optional[str] = typer.Option(None, help="Before this ISO time."),
          limit: Optional[int] = typer.Option(None, min=1, help="At most this many events (oldest first)."),
          jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object a line (for a SIEM)."),
          as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption,
          config: Optional[Path] = ConfigOption) -> None:
    """Who submitted, approved, denied and retried provisioning requests, and their outcomes, oldest first."""
    use_config(config)
    after, before = _time("--since", since, age=True), _time("--until", until, age=False)
    from provisioning.audit import events
    from worker import runtime

    if connector is not None:
        connector = requests_connector(connector)
    found = events(runtime.engine(), connector=connector, since=after, until=before, limit=limit)
    if jsonl:
        sys.stdout.write("".join(event.to_json() + "\n" for event in found))
        return
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        from access.render import write_json_array

        write_json_array(sys.stdout, [event.as_dict() for event in found])
        return
    if not found:
        output.note("no audit events", shown)
        return
    rows = output.rows_shown(found, shown)
    output.print_rows(AUDIT_COLUMNS, ((e.at.isoformat(), e.kind.value, e.request_id, e.connector, e.action,
                                       e.actor, e.on_behalf_of, e.detail) for e in rows), shown)
    if len(found) > len(rows):
        output.note(f"… and {len(found) - len(rows):,} more events (--json lists them all; --since and "
                    "--connector narrow them down)", shown)
