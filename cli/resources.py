"""``jumpsync resources | grants``: what a connector's sync stored, row by row."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import output
from cli.common import ConfigOption, check_resource_type, connector_query, print_json, use_config
from cli.output import Col, JsonOption, Output, OutputOption, WideOption
from cli.refs import named
from config.settings import ALL_RESOURCE_TYPES


def resources(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
              type_: Optional[str] = typer.Option(None, "--type", help="One of " + ", ".join(ALL_RESOURCE_TYPES)),
              live: bool = typer.Option(False, "--live", help="Leave out resources deleted in JumpCloud."),
              as_json: bool = JsonOption, wide: bool = WideOption,
              output_: Optional[Output] = OutputOption) -> None:
    """Resources of a connector (accounts, groups, apps, roles)."""
    use_config(config)
    check_resource_type(type_)
    from models import queries

    data = connector_query(queries.resources, name, type_, include_deleted=not live)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json([item.to_json() for item in data])
        return
    output.print_rows(RESOURCE_COLUMNS, ((item.type, item.id, item.name, item.email, item.status,
                                          "yes" if item.deleted else "") for item in data), shown)


#: At 80 columns: id and name always; then email, status and type as they fit (type first to go when it is the
#: same in every row, as with --type).
RESOURCE_COLUMNS = (Col("type", category=True, drop=3), Col("id"), Col("name", wrap=True), Col("email", drop=1),
                    Col("status", style=output.status_style, drop=2), Col("deleted", drop=4))


def grants(name: str = typer.Argument(..., help="Connector name."), config: Optional[Path] = ConfigOption,
           live: bool = typer.Option(False, "--live", help="Leave out grants deleted in JumpCloud."),
           as_json: bool = JsonOption, wide: bool = WideOption,
           output_: Optional[Output] = OutputOption) -> None:
    """Grants of a connector: group members, app access (direct or via a group), role assignments."""
    use_config(config)
    from models import queries

    data = connector_query(queries.grants, name, include_deleted=not live)
    shown = output.choose(output_, wide=wide, as_json=as_json)
    if shown is Output.json:
        print_json([g.to_json() for g in data])
        return
    ids = shown is not Output.table  # wide and tsv carry the ids beside the names (cli.refs)
    output.print_rows(GRANT_COLUMNS, ((named(g.resource_type, g.resource_id, g.resource_name, with_id=ids),
                                       g.entitlement,
                                       named(g.principal_type, g.principal_id, g.principal_name, with_id=ids),
                                       named("group", g.via, g.via_name, with_id=ids) if g.via else "",
                                       "yes" if g.deleted else "") for g in data), shown)


GRANT_COLUMNS = (Col("resource"), Col("entitlement", category=True), Col("principal"), Col("via", drop=1),
                 Col("deleted", drop=2))
