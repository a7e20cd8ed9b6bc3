"""What every command group shares: the ``--config`` option, loading the settings, and how a mistake ends."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from cli import output
from config.settings import ALL_RESOURCE_TYPES, ConfigError

err = output.stderr()

ConfigOption = typer.Option(None, "--config", help="Config file (default: $JUMPSYNC_CONFIG or ./jumpsync.toml).")
ConnectorArgument = typer.Argument(..., help="Connector name.")


def use_config(config: Optional[Path]) -> None:
    """Point this process (and any child) at the config file, and fail early on a bad one."""
    if config is not None:
        os.environ["JUMPSYNC_CONFIG"] = str(config)
    from worker import runtime

    try:
        runtime.settings()
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def usage_error(message: str) -> typer.Exit:
    """Say what was wrong with the command line; the caller raises the exit (code 2)."""
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def print_json(data: Any) -> None:
    """A command's JSON output (docs/cli-json.md), indented."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def check_resource_type(type_: Optional[str]) -> None:
    """Exit 2 on a ``--type`` that is no resource type, offering the closest."""
    if type_ is not None and type_ not in ALL_RESOURCE_TYPES:
        from models.resolver import suggest

        raise usage_error(f"--type {type_!r} is not one of {', '.join(ALL_RESOURCE_TYPES)}"
                          + suggest(type_, ALL_RESOURCE_TYPES))


def connector_query(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(engine, *args)`` on the configured database; an unknown connector exits 2."""
    from models import queries
    from worker import runtime

    try:
        return fn(runtime.engine(), *args, **kwargs)
    except queries.UnknownConnector as exc:
        raise usage_error(str(exc)) from None


def requests_connector(name: str) -> str:
    """The connector a ``--connector`` filter of requests names (``config.names``: ``ACME`` is ``acme``): one
    configured, synced once, or named by a recorded request; exit 2 with the closest otherwise."""
    from sqlmodel import Session

    from config.names import match_name, suggest
    from models.queries import synced_connector_names
    from provisioning import requests as prequests
    from worker import runtime

    engine = runtime.engine()
    with Session(engine) as session:
        known = {c.name for c in runtime.settings().connectors} | set(synced_connector_names(session))
    known |= set(prequests.connector_names(engine))
    found = match_name(name, sorted(known))
    if found is None:
        raise usage_error(f"--connector {name!r} is neither configured nor named by any request"
                          + suggest(name, sorted(known)))
    return found
