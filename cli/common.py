"""What every command group shares: the ``--config`` option, loading the settings, and how a mistake ends."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape
from rich.text import Text

from cli import output
from cli.output import Output
from config.redact import redact
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
        err.print(f"[red]config error:[/red] {escape(redact(str(exc)))}", highlight=False)
        raise typer.Exit(2) from None


def usage_error(message: str) -> typer.Exit:
    """Say what was wrong with the command line; the caller raises the exit (code 2)."""
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def deprecated(old: str, new: str) -> None:
    """A warning on stderr that ``old`` works for this release only; ``new`` is what to type instead."""
    err.print(Text(f"warning: {old} is deprecated and stops working in the next release; use {new}"))


def legacy_format(old: Optional[enum.Enum], new: Optional[Output]) -> Optional[Output]:
    """``--format F``, the spelling of ``-o F`` in ``report`` and ``export`` before every command took ``-o``:
    still taken this release, with a warning."""
    if old is None:
        return new
    if old.value == Output.table.value:  # the report's default view: a table at a terminal, TSV in a pipe
        deprecated("--format table", "no option: a table is the default at a terminal")
        return new
    deprecated(f"--format {old.value}", f"-o {old.value}")
    if new is not None and new.value != old.value:
        raise usage_error(f"--format {old.value} and -o {new.value} ask for different outputs")
    return Output(old.value)


def format_or_file(value: Optional[str], file: Optional[Path],
                   formats: Sequence[Output]) -> tuple[Optional[Output], Optional[Path]]:
    """The output format and the file of a command whose ``-o`` used to name the file it writes (``export``).

    ``-o`` is the format, as in every command; a value that names no format is the old ``-o FILE`` and still
    writes that file this release, with a warning (use ``--file``). A file named like a format is
    ``--file json`` (or ``-o ./json``).
    """
    if value is None:
        return None, file
    accepted = " or ".join(f.value for f in formats)
    if value in {f.value for f in Output}:
        if Output(value) not in formats:
            raise usage_error(f"-o {value}: this command writes {accepted}")
        return Output(value), file
    if file is not None:
        raise usage_error(f"-o {value!r} is no output format ({accepted}), and --file names the file")
    deprecated(f"-o FILE (-o {value})", f"--file {value} (-o is the output format: {accepted})")
    return None, Path(value)


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
