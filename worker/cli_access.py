"""``jumpsync access | who-has | report | export``: access insight from the synced database (docs/access.md).

Nothing here calls JumpCloud. Every table cell that shows synced data goes through ``render.cell``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from worker.access_output import (REPORT_ROWS_PER_KIND, ExportFormat, ReportFormat, export_lines, print_json,
                                  report_head, write_export, write_report)
from worker.render import cell
from worker.settings import ConfigError

console = Console()
err = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", help="Config file (default: $JUMPSYNC_CONFIG or ./jumpsync.toml).")
ConnectorArgument = typer.Argument(..., help="Connector name.")
LiveOption = typer.Option(False, "--live", help="Compute from the tables even when the worker's stored rendering "
                                                "is current (docs/access.md, stored renderings).")


def _use_config(config: Optional[Path]) -> None:
    """As worker.cli._use_config (not imported from there: ``python -m worker.cli`` would load it twice)."""
    if config is not None:
        os.environ["JUMPSYNC_CONFIG"] = str(config)
    from worker import runtime

    try:
        runtime.settings()
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def _fail(message: str, candidates: Iterable[dict] = ()) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    for c in candidates:
        extra = ", ".join(str(c[k]) for k in ("email", "username", "status") if c.get(k))
        err.print(Text(f"  {c['type']} {c['id']}: {c['name']}" + (f" ({extra})" if extra else "")))
    return typer.Exit(2)


def _query(fn: Callable, *args: Any) -> Any:
    """Run an access query on the configured database; operator mistakes exit 2 with one clear message."""
    from models import access as queries
    from models.queries import UnknownConnector
    from worker import runtime

    try:
        return fn(runtime.engine(), *args)
    except queries.Ambiguous as exc:
        raise _fail(str(exc), exc.candidates) from None
    except (UnknownConnector, queries.NotFound, ValueError) as exc:
        raise _fail(str(exc)) from None


def _ref(value: dict | None) -> Text:
    if value is None:
        return cell("")
    return cell(f"{value['name']} ({value['id']})" if value.get("name") else value["id"])


def _account_line(account: dict) -> Text:
    extra = ", ".join(str(account[k]) for k in ("email", "username", "status") if account.get(k))
    return cell(f"{account['type']} {account['id']}: {account['name']}" + (f" ({extra})" if extra else ""))


def access(connector: str = ConnectorArgument,
           user: str = typer.Argument(..., help="The person: a user or admin id, an email or a username."),
           as_json: bool = typer.Option(False, "--json"),
           config: Optional[Path] = ConfigOption) -> None:
    """Every group, app and role a person holds, and why, across their user and admin accounts."""
    _use_config(config)
    from models import access as queries

    data = _query(queries.access, connector, user)
    if as_json:
        print_json(data)
        return
    person = data["person"]
    for account in ([person["user"]] if person["user"] else []) + person["admins"]:
        console.print(_account_line(account))
    if not person["user"]:
        console.print("no user account (admin only)")
    if not data["access"]:
        console.print("holds no group, app or role")
        return
    table = Table("type", "name", "id", "entitlement", "via", "account")
    for e in data["access"][:TABLE_ROWS]:
        table.add_row(cell(e["type"]), cell(e["name"]), cell(e["id"]), cell(e["entitlement"]),
                      _ref(e["via"]) if e["via"] else cell("direct"),
                      cell(f"{e['account']['type']} {e['account']['id']}"))
    console.print(table)
    _more(len(data["access"]) - TABLE_ROWS, "groups, apps and roles", "--json")


def who_has(connector: str = ConnectorArgument,
            target: str = typer.Argument(..., metavar="app:NAME|group:NAME|role:NAME",
                                         help="What to look up; NAME is a name (case-insensitive) or an id."),
            as_json: bool = typer.Option(False, "--json"),
            config: Optional[Path] = ConfigOption) -> None:
    """Everyone who holds a group, app or role, and why (direct, or through which group)."""
    _use_config(config)
    from models import access as queries

    data = _query(queries.who_has, connector, target)
    if as_json:
        print_json(data)
        return
    resource = data["resource"]
    console.print(cell(f"{resource['type']} {resource['id']}: {resource['name']}"))
    if not data["holders"]:
        console.print("nobody holds it")
        return
    table = Table("type", "name", "id", "email", "status", "entitlement", "via", "linked user")
    for h in data["holders"][:TABLE_ROWS]:
        p = h["principal"]
        table.add_row(cell(p["type"]), cell(p["name"]), cell(p["id"]), cell(p["email"]),
                      cell("deleted" if p["deleted"] else p["status"]), cell(h["entitlement"]),
                      _ref(h["via"]) if h["via"] else cell("direct"), _ref(h["linked_user"]))
    console.print(table)
    _more(len(data["holders"]) - TABLE_ROWS, "holders", "--json")


def report(connector: str = ConnectorArgument,
           fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json or csv."),
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Identity hygiene findings: accounts, access and groups that need a look (kinds in docs/access.md)."""
    _use_config(config)
    from models import access as queries
    from worker.access_snapshots import REPORT_HEAD, report_artifact

    if fmt is not ReportFormat.table:
        rendered = _rendered(connector, report_artifact(fmt), live)
        if rendered is not None:
            _write_bytes(rendered)
            return
        data = _query(queries.report, connector)
        with _utf8_stdout() as out:
            write_report(out, data, fmt)
        return
    # The stored table data holds the first findings of each kind only, with the full summary.
    head = _rendered(connector, REPORT_HEAD, live)
    data = json.loads(head.read()) if head else _query(queries.report, connector)
    for kind, count in data["summary"].items():
        console.print(f"{kind:<28} {count}")
    if not data["findings"]:
        return
    table = Table("kind", "subject", "related", "via", "detail")
    shown = report_head(data, REPORT_ROWS_PER_KIND)["findings"]  # the first of each kind: every kind is seen
    for f in shown:
        subject = f["subject"]
        table.add_row(cell(f["kind"]), cell(f"{subject['type']} ") + _ref(subject),
                      _ref(f["related"]), _ref(f["via"]), cell(f["detail"]))
    console.print(table)
    for kind, count in data["summary"].items():
        _more(count - sum(1 for f in shown if f["kind"] == kind), f"{kind} findings", "--format csv or json")


#: Rows a table shows at most (the report: ``REPORT_ROWS_PER_KIND`` of each kind of finding). Rich draws about a
#: thousand rows a second, and a longer list is read with --json or --format csv anyway: the report's 25k
#: findings on the xl tenant took 40s as one table.
TABLE_ROWS = 200


def _more(count: int, what: str, full: str) -> None:
    if count > 0:
        console.print(f"… and {count:,} more {what} ({full} lists them all)")


def export(connector: str = ConnectorArgument,
           fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", help="csv or json."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Every live grant with principal and resource details, for access reviews (CSV columns: docs/access.md)."""
    _use_config(config)
    from worker.access_snapshots import export_artifact

    rendered = _rendered(connector, export_artifact(fmt), live)
    lines = _query(export_lines, connector, fmt) if rendered is None else None
    if output is None:
        if rendered is not None:
            _write_bytes(rendered)
        else:
            with _utf8_stdout() as out:
                write_export(out, lines, fmt)
        return
    try:
        if rendered is not None:
            with open(output, "wb") as binary:
                rendered.write_to(binary)
            count = rendered.header.export_rows
        else:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = write_export(out, lines, fmt)
    except OSError as exc:
        raise _fail(f"{output}: {exc.strerror}") from None
    err.print(Text(f"wrote {count} grants to {output}"))


def _rendered(connector: str, artifact: str, live: bool):
    """The worker's stored rendering of ``artifact`` (worker.access_snapshots.StoredArtifact) when it is
    current and wanted: not ``--live``, and ``[access] snapshots`` on. Else None: compute it."""
    from worker import access_snapshots, runtime

    if live or not runtime.settings().file.access.snapshots:
        return None
    return _query(access_snapshots.stored_artifact, connector, artifact)


def _write_bytes(rendered) -> None:
    """A stored rendering's bytes to standard output (the text stream flushed first, nothing re-encoded)."""
    sys.stdout.flush()
    rendered.write_to(sys.stdout.buffer)
    sys.stdout.buffer.flush()


@contextmanager
def _utf8_stdout() -> Iterator[IO[str]]:
    """Standard output as UTF-8 text without newline translation, whatever the locale: the bytes a stored
    rendering holds, so that live and stored output are the same."""
    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        yield out
    finally:
        out.flush()
        out.detach()
