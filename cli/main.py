"""The ``jumpsync`` command: the Typer app, every command group registered in the order ``--help`` lists them.

Each group lives in its own module (cli.sync, cli.access, cli.provision...) and is imported here at start-up, so
those modules import only what their option types need at the top; a command imports the rest when it runs
(tests/unit/test_cli_startup.py holds a read-only command to that).
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from cli import (
    access,
    api,
    audit,
    changes,
    db,
    deletions,
    msp,
    processes,
    provision,
    requests,
    resources,
    runs,
    startup,  # first: it pauses the garbage collector while the command line is imported
    sync,
    tokens,
)
from cli.common import err
from cli.up import command as up_command
from config.redact import redact
from config.settings import ConfigError

app = typer.Typer(help="Keep a database in step with JumpCloud organisations.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

for command in (up_command.up, processes.worker, processes.beat, processes.flower, processes.simulator, sync.sync,
                sync.status, resources.resources, resources.grants, provision.provision):
    app.command()(command)
app.add_typer(requests.requests_app, name="requests")
app.command("provision-bulk")(provision.provision_bulk)
app.command()(processes.health)
app.command()(api.api)  # the HTTP API (docs/api.md)
app.add_typer(db.db_app, name="db")
app.add_typer(deletions.deletions_app, name="deletions")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(msp.msp_app, name="msp")
app.add_typer(tokens.tokens_app, name="tokens")
app.command()(changes.changes)
app.command()(audit.audit)  # the provisioning audit trail
app.command()(access.access)  # access insight (docs/access.md)
app.command("who-has")(access.who_has)
app.command()(access.report)
app.command()(access.export)
startup.imported()


def main() -> None:
    """The ``jumpsync`` entry point: operator errors become one clear line and exit code 2, not a traceback."""
    from models.migrate import SchemaOutOfDate

    startup.frozen()
    up_command.adopt_running_up(sys.argv[1:])
    try:
        app()
    except (SchemaOutOfDate, ConfigError) as exc:
        err.print(f"[red]error:[/red] {escape(redact(str(exc)))}")
        sys.exit(2)
