"""``jumpsync msp ...``: the organisations of each ``[[msp]]`` key, and a discovery now."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import ConfigOption, print_json, usage_error, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.waiting import wait_or_exit
from config.settings import ConfigError
from config.words import plural
from worker.names import TaskName

msp_app = typer.Typer(help="MSP keys: the organisations they reach, each synced as a connector.",
                      no_args_is_help=True)
console = output.stdout()

ORG_COLUMNS = (Col("msp", category=True), Col("connector"), Col("organisation", wrap=True),
               Col("state", style=output.status_style), Col("org id", drop=2), Col("last seen", time=True, drop=1))


@msp_app.command("list")
def list_organizations(config: Optional[Path] = ConfigOption, as_json: bool = JsonOption, wide: bool = WideOption,
                       output_: Optional[Output] = OutputOption) -> None:
    """Each MSP key's organisations: the connector each was given and whether it syncs."""
    use_config(config)
    from msp.views import organizations
    from worker import runtime

    tables = organizations(runtime.engine(), runtime.settings().file)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json({"msp": tables})
        return
    if not tables:
        output.note("no [[msp]] table is configured", shown)
        return
    output.print_rows(ORG_COLUMNS, ((t["name"], o["connector"], o["display_name"], o["state"], o["org_id"],
                                     o["last_seen_at"]) for t in tables for o in t["organizations"]), shown)
    for table in tables:
        listing = table["listing"]
        if listing is None:
            output.note(f"{table['name']}: not listed yet", shown)
        else:
            detail = plural(listing["organizations"], "organisation") if listing["outcome"] == "ok" else listing["error"]
            output.note(f"{table['name']}: last listing {listing['outcome']} at {listing['listed_at']}: {detail}",
                        shown)


@msp_app.command("discover")
def discover(name: str = typer.Argument(..., help="The [[msp]] table's name."),
             config: Optional[Path] = ConfigOption,
             wait: bool = typer.Option(False, "--wait", help="Wait for the listing; exit 1 unless it succeeded."),
             timeout: float = typer.Option(120, help="Seconds to wait with --wait."),
             as_json: bool = JsonOption) -> None:
    """List an MSP key's organisations now (beat does it every discover_interval)."""
    use_config(config)
    from msp.views import listing_since
    from worker import runtime
    from worker.waiting import send

    try:
        runtime.settings().file.msp_table(name)
    except ConfigError as exc:
        raise usage_error(str(exc)) from None
    since = datetime.now(timezone.utc)
    task_id = send(TaskName.MSP_DISCOVER, name)
    if not wait:
        print_json({"task_id": task_id}) if as_json else console.print(f"queued discovery of {name} (task {task_id})")
        return
    file = runtime.settings().file
    table = wait_or_exit(lambda: listing_since(runtime.engine(), file, name, since), task_id, timeout,
                         f"the discovery of {name}")
    listing = table["listing"]
    if as_json:
        print_json(table)
    else:
        syncing = sum(o["state"] in ("syncing", "missing") for o in table["organizations"])
        detail = (f"{plural(listing['organizations'], 'organisation')} listed, {syncing} syncing"
                  if listing["outcome"] == "ok" else listing["error"])
        console.print(f"{name}: listing {listing['outcome']}: {detail}")
    raise typer.Exit(0 if listing["outcome"] == "ok" else 1)
