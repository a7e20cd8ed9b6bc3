"""``jumpsync access | who-has | report | export``: access insight from the synced database (docs/access.md).

Nothing here calls JumpCloud. Every table cell that shows synced data goes through ``cli.output.cell``.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Optional

import typer
from rich.markup import escape
from rich.text import Text

from access.render import (
    REPORT_ROWS_PER_KIND,
    ExportFormat,
    ReportFormat,
    export_lines,
    print_json,
    report_head,
    write_export,
    write_report,
)
from cli import output
from cli.common import ConfigOption, ConnectorArgument, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.refs import name_and_id

console = output.stdout()
err = output.stderr()

LiveOption = typer.Option(False, "--live", help="Compute from the tables even when the worker's stored rendering "
                                                "is current (docs/access.md, stored renderings).")


def _fail(message: str, candidates: Iterable[dict] = (), heading: str | None = None) -> typer.Exit:
    from models.resolver import describe

    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    candidates = list(candidates)
    if candidates and heading:
        err.print(heading)
    for c in candidates:
        err.print(Text(f"  {describe(c)}"))
    return typer.Exit(2)


def _query(fn: Callable, *args: Any) -> Any:
    """Run an access query on the configured database; operator mistakes exit 2 with one clear message."""
    from models.queries import UnknownConnector
    from models.resolver import Ambiguous, NotFound
    from worker import runtime

    try:
        return fn(runtime.engine(), *args)
    except Ambiguous as exc:
        raise _fail(str(exc), exc.candidates) from None
    except NotFound as exc:
        raise _fail(str(exc), exc.candidates, heading="did you mean:") from None
    except (UnknownConnector, ValueError) as exc:
        raise _fail(str(exc)) from None


def _ref(value: dict | None) -> str:
    return "" if value is None else name_and_id(value.get("name"), value["id"])


def access(connector: str = ConnectorArgument,
           user: str = typer.Argument(..., help="The person: a user or admin id, an email or a username."),
           as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Every group, app and role a person holds, and why, across their user and admin accounts."""
    use_config(config)
    from access import queries
    from models.resolver import describe

    data = _query(queries.access, connector, user)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json(data)
        return
    person = data["person"]
    for account in ([person["user"]] if person["user"] else []) + person["admins"]:
        output.note(describe(account), shown)
    if not person["user"]:
        output.note("no user account (admin only)", shown)
    if not data["access"]:
        output.note("holds no group, app or role", shown)
        return
    rows = output.rows_shown(data["access"], shown)
    output.print_rows(ACCESS_COLUMNS, ((e["type"], e["name"], e["id"], e["entitlement"],
                                        _ref(e["via"]) if e["via"] else "direct",
                                        f"{e['account']['type']} {e['account']['id']}") for e in rows), shown)
    _more(len(data["access"]) - len(rows), "groups, apps and roles", "--json", shown)


ACCESS_COLUMNS = (Col("type"), Col("name", identity=True), Col("id", identity=True), Col("entitlement", drop=3),
                  Col("via", drop=1), Col("account", drop=2))


def who_has(connector: str = ConnectorArgument,
            target: str = typer.Argument(..., metavar="app:NAME|group:NAME|role:NAME",
                                         help="What to look up; NAME is a name (case-insensitive) or an id."),
            as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption,
            config: Optional[Path] = ConfigOption) -> None:
    """Everyone who holds a group, app or role, and why (direct, or through which group)."""
    use_config(config)
    from access import queries

    data = _query(queries.who_has, connector, target)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json(data)
        return
    resource = data["resource"]
    output.note(f"{resource['type']} {resource['id']}: {resource['name']}", shown)
    if not data["holders"]:
        output.note("nobody holds it", shown)
        return
    rows = output.rows_shown(data["holders"], shown)
    output.print_rows(HOLDER_COLUMNS, ((h["principal"]["type"], h["principal"]["name"], h["principal"]["id"],
                                        h["principal"]["email"],
                                        "deleted" if h["principal"]["deleted"] else h["principal"]["status"],
                                        h["entitlement"], _ref(h["via"]) if h["via"] else "direct",
                                        _ref(h["linked_user"])) for h in rows), shown)
    _more(len(data["holders"]) - len(rows), "holders", "--json", shown)


HOLDER_COLUMNS = (Col("type"), Col("name", identity=True), Col("id", identity=True), Col("email", identity=True),
                  Col("status", identity=True, style=output.status_style), Col("entitlement", drop=3),
                  Col("via", drop=1), Col("linked user", drop=2))


def report(connector: str = ConnectorArgument,
           fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json or csv."),
           wide: bool = WideOption,
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Identity hygiene findings: accounts, access and groups that need a look (kinds in docs/access.md)."""
    use_config(config)
    from access.report import report as compute_report
    from access.snapshots import REPORT_HEAD, report_artifact

    if fmt is not ReportFormat.table:
        rendered = _rendered(connector, report_artifact(fmt), live)
        if rendered is not None:
            _write_bytes(rendered)
            return
        data = _query(compute_report, connector)
        with _utf8_stdout() as out:
            write_report(out, data, fmt)
        return
    # The stored table data holds the first findings of each kind only, with the full summary.
    head = _rendered(connector, REPORT_HEAD, live)
    data = json.loads(head.read()) if head else _query(compute_report, connector)
    shown = output.choose(wide=wide)
    for kind, count in data["summary"].items():
        output.note(f"{kind:<28} {count}", shown)
    if not data["findings"]:
        return
    findings = report_head(data, REPORT_ROWS_PER_KIND)["findings"]  # the first of each kind: every kind is seen
    output.print_rows(FINDING_COLUMNS, ((f["kind"], f"{f['subject']['type']} {_ref(f['subject'])}",
                                         _ref(f["related"]), _ref(f["via"]), f["detail"]) for f in findings), shown)
    for kind, count in data["summary"].items():
        _more(count - sum(1 for f in findings if f["kind"] == kind), f"{kind} findings", "--format csv or json",
              shown)


FINDING_COLUMNS = (Col("kind"), Col("subject", identity=True), Col("related", drop=2), Col("via", drop=3),
                   Col("detail", wrap=True, drop=1))


def _more(count: int, what: str, full: str, shown: Output) -> None:
    if count > 0:
        output.note(f"… and {count:,} more {what} ({full} lists them all)", shown)


def export(connector: str = ConnectorArgument,
           fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", help="csv or json."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Every live grant with principal and resource details, for access reviews (CSV columns: docs/access.md)."""
    use_config(config)
    from access.snapshots import export_artifact

    rendered = _rendered(connector, export_artifact(fmt), live)
    lines = _query(export_lines, connector, fmt) if rendered is None else iter(())  # read only without a render
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
    """The worker's stored rendering of ``artifact`` (access.snapshots.StoredArtifact) when it is
    current and wanted: not ``--live``, and ``[access] snapshots`` on. Else None: compute it."""
    from access import snapshots as access_snapshots
    from worker import runtime

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
