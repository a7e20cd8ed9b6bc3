"""``jumpsync up``: the whole thing on one machine (cli.up.supervisor), and the commands run beside it.

A client command run in the folder of a running ``up`` uses that run's broker, config and database
(cli.up.state.adopt_settings); the processes of a deployment never do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from cli import output
from cli.common import ConfigOption

console = output.stdout()
err = output.stderr()

#: Commands that are processes of a deployment (or ``up`` itself), not clients of one: they never take the
#: settings of an ``up`` running in the folder.
SERVER_COMMANDS = ("up", "worker", "beat", "flower", "simulator", "api")

#: The most sync worker processes ``up`` starts by default: a sync's fetch parts can all run at once.
MOST_SYNC_PROCESSES = 4


def default_concurrency() -> int:
    """Sync worker processes when ``--concurrency`` is not given: one per usable core, at least 2 (a full sync
    never holds up a refresh or a rendering alone) and at most ``MOST_SYNC_PROCESSES``. Each process holds its own
    memory, and a sync's group part usually takes longer than its other parts together, so 2 processes end a
    sync about as soon as 4; on a busy machine, processes beyond the cores only wait for one."""
    return max(2, min(MOST_SYNC_PROCESSES, len(os.sched_getaffinity(0))))


def up(once: bool = typer.Option(False, "--once", help="Wait for the first sync of every connector, then exit."),
       config: Optional[Path] = ConfigOption,
       flower_port: Optional[int] = typer.Option(None, min=1, max=65535,
                                                 help="Flower's port (loopback only; default 5555, or a free one "
                                                      "when 5555 is taken). No Flower with --once."),
       api_port: Optional[int] = typer.Option(None, min=1, max=65535,
                                              help="The HTTP API's port (loopback only; default 8787, or a free "
                                                   "one when 8787 is taken)."),
       concurrency: Optional[int] = typer.Option(None, min=1,
                                                 help="Sync worker processes (default: one per usable core, "
                                                      f"2 to {MOST_SYNC_PROCESSES}).")) -> None:
    """Run the whole thing locally: broker, worker, beat, Flower and the HTTP API (and a simulated org when none
    is configured). A port given here and taken by another program stops it before it starts anything (exit 2)."""
    from cli.up.supervisor import run_up

    if config is not None:
        os.environ["JUMPSYNC_CONFIG"] = str(config)
    raise typer.Exit(run_up(once=once, flower_port=flower_port, console=console,
                            concurrency=default_concurrency() if concurrency is None else concurrency,
                            api_port=api_port))


def adopt_running_up(argv: list[str]) -> None:
    """A client command run in the folder of a running ``jumpsync up`` uses that run's broker, config and
    database (for those not set in the environment or by ``--config``), and says so on stderr in one line, once
    it reads its settings: ``--help``, or a command line refused before, uses none of them and says nothing."""
    from cli.up import state
    from config.settings import when_first_loaded

    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None or command in SERVER_COMMANDS:
        return
    config_given = "--config" in argv or any(arg.startswith("--config=") for arg in argv)
    said = state.adopt_settings(given=("JUMPSYNC_CONFIG",) if config_given else ())
    if said is not None:
        when_first_loaded(lambda: err.print(Text(said), highlight=False, soft_wrap=True))
