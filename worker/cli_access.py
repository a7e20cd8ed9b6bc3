"""``jumpsync access | who-has | report | export``: access insight from the synced database (docs/access.md).

Nothing here calls JumpCloud. Every table cell that shows synced data goes through ``render.cell``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import IO, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from worker.render import cell
from worker.settings import ConfigError

console = Console()
err = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", help="Config file (default: $JUMPSYNC_CONFIG or ./jumpsync.toml).")
ConnectorArgument = typer.Argument(..., help="Connector name.")


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


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


def _print_json(data: dict[str, Any]) -> None:
    """The object with one key per line and each list element on a line of its own: as readable as indent=2
    and diffable line by line, but written by the C encoder (indent=2 takes 0.7s for a 50k-member group)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    lines = ["{"]
    for index, (key, value) in enumerate(data.items()):
        comma = "," if index < len(data) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f"  {encode(key)}: [")
            lines.append(",\n".join("    " + encode(item) for item in value))
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {encode(key)}: {encode(value)}{comma}")
    lines.append("}")
    sys.stdout.write("\n".join(lines) + "\n")


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
        _print_json(data)
        return
    person = data["person"]
    for account in ([person["user"]] if person["user"] else []) + person["admins"]:
        console.print(_account_line(account))
    if not person["user"]:
        console.print("no user account (admin only)")
    table = Table("type", "name", "id", "entitlement", "via", "account")
    for e in data["access"]:
        table.add_row(cell(e["type"]), cell(e["name"]), cell(e["id"]), cell(e["entitlement"]),
                      _ref(e["via"]) if e["via"] else cell("direct"),
                      cell(f"{e['account']['type']} {e['account']['id']}"))
    console.print(table if data["access"] else "holds no group, app or role")


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
        _print_json(data)
        return
    resource = data["resource"]
    console.print(cell(f"{resource['type']} {resource['id']}: {resource['name']}"))
    table = Table("type", "name", "id", "email", "status", "entitlement", "via", "linked user")
    for h in data["holders"]:
        p = h["principal"]
        table.add_row(cell(p["type"]), cell(p["name"]), cell(p["id"]), cell(p["email"]),
                      cell("deleted" if p["deleted"] else p["status"]), cell(h["entitlement"]),
                      _ref(h["via"]) if h["via"] else cell("direct"), _ref(h["linked_user"]))
    console.print(table if data["holders"] else "nobody holds it")


def report(connector: str = ConnectorArgument,
           fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json or csv."),
           config: Optional[Path] = ConfigOption) -> None:
    """Identity hygiene findings: accounts, access and groups that need a look (kinds in docs/access.md)."""
    _use_config(config)
    from models import access as queries

    data = _query(queries.report, connector)
    if fmt is ReportFormat.json:
        _print_json(data)
        return
    if fmt is ReportFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(queries.REPORT_COLUMNS)
        writer.writerows(_csv_rows(queries.finding_row(f) for f in data["findings"]))
        return
    for kind, count in data["summary"].items():
        console.print(f"{kind:<28} {count}")
    if data["findings"]:
        table = Table("kind", "subject", "related", "via", "detail")
        for f in data["findings"]:
            subject = f["subject"]
            table.add_row(cell(f["kind"]), cell(f"{subject['type']} ") + _ref(subject),
                          _ref(f["related"]), _ref(f["via"]), cell(f["detail"]))
        console.print(table)


def export(connector: str = ConnectorArgument,
           fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", help="csv or json."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
           config: Optional[Path] = ConfigOption) -> None:
    """Every live grant with principal and resource details, for access reviews (CSV columns: docs/access.md)."""
    _use_config(config)
    from models import access as queries

    rows = _query(queries.iter_export, connector)
    if output is None:
        count = _write_export(sys.stdout, rows, fmt, queries.EXPORT_COLUMNS)
        sys.stdout.flush()
        return
    try:
        with open(output, "w", newline="", encoding="utf-8") as out:
            count = _write_export(out, rows, fmt, queries.EXPORT_COLUMNS)
    except OSError as exc:
        raise _fail(f"{output}: {exc.strerror}") from None
    err.print(Text(f"wrote {count} grants to {output}"))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)


def csv_cell(value: Any) -> Any:
    """A CSV field that a spreadsheet shows as text: names come from JumpCloud, and a review file is opened in
    Excel, where ``=HYPERLINK(...)`` would be a live formula. Such text gets a leading ``'`` (OWASP's advice);
    JSON output is never altered. Booleans are ``true``/``false``, None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_rows(rows: Iterable[tuple]) -> Iterator[list]:
    # csv_cell only where it changes something: 2M calls would double the time of a 176k-grant export.
    for row in rows:
        yield [csv_cell(v) if (v.__class__ is bool or (v.__class__ is str and v[:1] in _FORMULA_FIRST)) else v
               for v in row]


def _write_export(out: IO[str], rows: Iterable[tuple], fmt: ExportFormat, columns: tuple[str, ...]) -> int:
    count = 0
    if fmt is ExportFormat.csv:
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in _csv_rows(rows):
            writer.writerow(row)
            count += 1
        return count
    # A JSON array with one object per line: valid JSON, streamed, and diffable between two reviews.
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    out.write("[")
    for row in rows:
        out.write(("\n" if count == 0 else ",\n") + dumps(dict(zip(columns, row))))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
