"""``jumpsync deletions ...``: see and approve mass deletions held by the safety valve."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Optional

import typer

from cli import output
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from config.settings import ALL_RESOURCE_TYPES

deletions_app = typer.Typer(help="Mass deletions held by the safety valve: list, approve.", no_args_is_help=True)
console = output.stdout()
err = output.stderr()


@deletions_app.command("held")
def held(as_json: bool = JsonOption, wide: bool = WideOption, output_: Optional[Output] = OutputOption) -> None:
    """Parts whose deletions are held, in each connector's latest run."""
    from models.queries import held_parts
    from worker import runtime

    rows = held_parts(runtime.engine())
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        sys.stdout.write(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
        return
    if not rows:
        output.note("no deletions are held", shown)
        return
    output.print_rows(HELD_COLUMNS, ((r.connector, r.run_id, r.part, r.finished_at, r.error) for r in rows), shown)


HELD_COLUMNS = (Col("connector"), Col("run"), Col("type", category=True), Col("finished", time=True, drop=1),
                Col("why", wrap=True))


@deletions_app.command("approve")
def approve(connector: str = typer.Argument(..., help="Connector name."),
            types: list[str] = typer.Option(..., "--type", help="Resource type whose deletion to approve (repeat)."),
            by: str = typer.Option("", help="Who approves (default: your login).")) -> None:
    """Let the next sync of these types (within a day) delete what JumpCloud no longer returns."""
    from sqlmodel import Session

    from models.queries import UnknownConnector, connector_id
    from pipeline.valve import approve as record_approval
    from worker import runtime

    bad = [t for t in types if t not in ALL_RESOURCE_TYPES or t == "role"]
    if bad:
        err.print(f"error: --type {', '.join(bad)}: choose from user, admin, group, app")
        raise typer.Exit(2)
    engine = runtime.engine()
    try:
        with Session(engine) as session:
            cid = connector_id(session, connector)
    except UnknownConnector as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    who = by or f"cli:{getpass.getuser()}"
    for resource_type in types:
        record_approval(engine, cid, resource_type, who)
    console.print(f"approved for the next sync of {connector} ({', '.join(types)}), valid for a day: "
                  f"run `jumpsync sync {connector} --wait` to apply")
