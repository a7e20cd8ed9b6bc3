"""How every ``--wait`` of the command ends: what the database recorded, or exit 1 with the task's error (a task
that failed before recording anything) or a timeout. The waiting itself is ``worker.waiting``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from cli import output

err = output.stderr()

T = TypeVar("T")


def wait_or_exit(recorded: Callable[[], T | None], task_id: str, timeout: float, what: str, *,
                 nothing_recorded: Callable[[Any], str] | None = None) -> T:
    """``recorded()`` once it gives something; exit 1 when task ``task_id`` ended first without it (failed, or
    with ``nothing_recorded`` succeeded) or ``timeout`` ran out, saying so about ``what`` ("the sync of acme")."""
    from worker.waiting import TaskFailed, wait_for

    try:
        found = wait_for(recorded, task_id, timeout, nothing_recorded=nothing_recorded)
    except TaskFailed as exc:
        raise task_failed(what, exc) from None
    if found is None:
        err.print(f"[red]timed out[/red] after {timeout:g}s waiting for {escape(what)}")
        raise typer.Exit(1)
    return found


def task_failed(what: str, exc: Exception) -> typer.Exit:
    """Print the error of a failed task (``worker.waiting.TaskFailed``); the caller raises the exit (code 1)."""
    task_id = getattr(exc, "task_id", "")
    err.print(f"[red]failed:[/red] {escape(what)}: {escape(str(exc))}" + (f" (task {task_id})" if task_id else ""),
              highlight=False)
    return typer.Exit(1)
