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
from cli.common import ConfigOption, ConnectorArgument, format_or_file, legacy_format, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.refs import name_and_id
from config.words import plural

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
    _more(len(data["access"]) - len(rows), ("group, app or role", "groups, apps and roles"), "--json", shown)


ACCESS_COLUMNS = (Col("type", category=True, drop=4), Col("name", wrap=True), Col("id"),
                  Col("entitlement", category=True, drop=3), Col("via", wrap=True, drop=1),
                  Col("account", wrap=True, drop=2))


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
    _more(len(data["holders"]) - len(rows), ("holder", "holders"), "--json", shown)


#: At 80 columns: name and id always; then status, email and type as they fit.
HOLDER_COLUMNS = (Col("type", category=True, drop=3), Col("name", wrap=True), Col("id"), Col("email", drop=2),
                  Col("status", style=output.status_style, drop=1), Col("entitlement", category=True, drop=6),
                  Col("via", wrap=True, drop=4), Col("linked user", wrap=True, drop=5))


def report(connector: str = ConnectorArgument,
           as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption,
           fmt: Optional[ReportFormat] = typer.Option(None, "--format", hidden=True,
                                                      help="Deprecated: -o table|json|csv."),
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Identity hygiene findings: accounts, access and groups that need a look (kinds in docs/access.md)."""
    use_config(config)
    shown = output.choose(legacy_format(fmt, output_), wide=wide, as_json=as_json)
    if shown in (Output.json, Output.csv):
        _report_file(connector, ReportFormat(shown.value), live)
        return
    capped = output.capped(shown)  # a table at a terminal: the first findings of each kind, every kind in view
    data = _report_data(connector, live, head=capped)
    for kind, count in data["summary"].items():
        output.note(f"{kind:<28} {count}", shown)
    if not data["findings"]:
        return
    findings = report_head(data, REPORT_ROWS_PER_KIND)["findings"] if capped else data["findings"]
    output.print_rows(FINDING_COLUMNS, ((f["kind"], f"{f['subject']['type']} {_ref(f['subject'])}",
                                         _ref(f["related"]), _ref(f["via"]), f["detail"]) for f in findings), shown)
    for kind, count in data["summary"].items():
        _more(count - sum(1 for f in findings if f["kind"] == kind), (f"{kind} finding", f"{kind} findings"),
              "-o csv or -o json", shown)


def _report_file(connector: str, fmt: ReportFormat, live: bool) -> None:
    """The report's JSON or CSV, every finding: the stored rendering when current, else computed now."""
    from access.report import report as compute_report
    from access.snapshots import report_artifact

    rendered = _rendered(connector, report_artifact(fmt), live)
    if rendered is not None:
        _write_bytes(rendered)
        return
    data = _query(compute_report, connector)
    with _utf8_stdout() as out:
        write_report(out, data, fmt)


def _report_data(connector: str, live: bool, *, head: bool) -> dict[str, Any]:
    """The report as its JSON reads: every finding, or with ``head`` the stored table data when current (the
    first findings of each kind, with the full summary)."""
    from access.report import report as compute_report
    from access.snapshots import REPORT_HEAD, report_artifact

    stored = _rendered(connector, REPORT_HEAD if head else report_artifact(ReportFormat.json), live)
    return json.loads(stored.read()) if stored else _query(compute_report, connector)


FINDING_COLUMNS = (Col("kind", category=True), Col("subject", wrap=True), Col("related", wrap=True, drop=2),
                   Col("via", wrap=True, drop=3), Col("detail", wrap=True, drop=1))


def _more(count: int, what: tuple[str, str], full: str, shown: Output) -> None:
    """``… and 1 more holder``: ``what`` is the noun for one and for several."""
    if count > 0:
        output.note(f"… and {plural(count, 'more ' + what[0], 'more ' + what[1])} ({full} lists them all)", shown)


def export(connector: str = ConnectorArgument,
           output_: Optional[str] = typer.Option(None, "--output", "-o", metavar="csv|json",
                                                 help="csv (default) or json. -o FILE, the old spelling of --file, "
                                                      "still writes FILE this release, with a warning."),
           file: Optional[Path] = typer.Option(None, "--file", "-f", help="Write here instead of stdout."),
           fmt_: Optional[ExportFormat] = typer.Option(None, "--format", hidden=True, help="Deprecated: -o csv|json."),
           live: bool = LiveOption,
           config: Optional[Path] = ConfigOption) -> None:
    """Every live grant with principal and resource details, for access reviews (CSV columns: docs/access.md)."""
    chosen, file = format_or_file(output_, file, (Output.csv, Output.json))
    fmt = ExportFormat((legacy_format(fmt_, chosen) or Output.csv).value)
    use_config(config)
    from access.snapshots import export_artifact

    rendered = _rendered(connector, export_artifact(fmt), live)
    lines = _query(export_lines, connector, fmt) if rendered is None else iter(())  # read only without a render
    if file is None:
        if rendered is not None:
            _write_bytes(rendered)
        else:
            with _utf8_stdout() as out:
                write_export(out, lines, fmt)
        return
    try:
        if rendered is not None:
            with open(file, "wb") as binary:
                rendered.write_to(binary)
            count = rendered.header.export_rows
        else:
            with open(file, "w", newline="", encoding="utf-8") as out:
                count = write_export(out, lines, fmt)
    except OSError as exc:
        raise _fail(f"{file}: {exc.strerror}") from None
    err.print(Text(f"wrote {plural(count, 'grant')} to {file}"))


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
