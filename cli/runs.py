"""``jumpsync runs cancel RUN``: an operator ends a run that nothing will move on (docs/operations.md)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from cli import output

runs_app = typer.Typer(help="Sync runs: cancel one that is stuck.", no_args_is_help=True)
console = output.stdout()
err = output.stderr()


@runs_app.command("cancel")
def cancel(run_id: int = typer.Argument(..., help="The run's id (jumpsync status --wide, or the run's log lines)."),
           reason: Optional[str] = typer.Option(None, "--reason", help="Why, recorded with your login.")) -> None:
    """Fail an active sync run and its unfinished parts now, recorded as cancelled by you; its connector may sync
    again at once. A part still running somewhere records nothing when it ends."""
    from auth import local
    from pipeline.runs import RunNotActive, cancel_run
    from worker import runtime

    try:
        cancelled = cancel_run(runtime.engine(), run_id, cancelled_by=f"cli:{local.login_name()}", reason=reason)
    except RunNotActive as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"run {cancelled.run_id} of {escape(cancelled.connector)} cancelled (it was {cancelled.status}); "
                  f"`jumpsync sync {escape(cancelled.connector)}` starts another", highlight=False)
