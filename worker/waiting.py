"""Waiting for what a command sent the workers: the one loop behind every ``--wait``.

What a wait reports is what the database records: a run, a refresh, a listing, a request's outcome. A task that
fails before it records anything (a worker whose settings lack the connector, a bug, a message dropped as
expired) leaves the database silent, so the wait also reads the task's state from the result backend: a failed
or revoked task ends the wait at the next poll with the task's error, not at the timeout.

Only the messages sent with ``send`` keep a result (``ignore_result=False``, unless ``keep_result=False``);
beat's and the pipeline's own keep none (``task_ignore_result``), and a result expires after ``result_expires``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from config.redact import redact_url
from worker.names import Priority, TaskName

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Task states after which no outcome will be recorded by this message.
_FAILED_STATES = frozenset({"FAILURE", "REVOKED", "REJECTED"})


class TaskFailed(Exception):
    """The task ended and recorded no outcome: it failed, or succeeded without one (its message says why;
    passwords in URLs redacted)."""

    def __init__(self, task_id: str, error: str) -> None:
        super().__init__(error)
        self.task_id = task_id
        self.error = error


def send(task: TaskName, *args: Any, retry_policy: dict[str, Any] | None = None, keep_result: bool = True,
         priority: Priority | None = None, **kwargs: Any) -> str:
    """Send ``task`` to its queue; its task id. ``keep_result`` (the default) keeps its state so that
    ``wait_for`` can see it fail; a sender nobody waits on leaves it off (the worker then stores nothing).
    ``priority``: a step other than the task's own (``worker.names.Priority``)."""
    from worker.celery_app import app

    options: dict[str, Any] = {"retry": True, "retry_policy": retry_policy} if retry_policy is not None else {}
    if priority is not None:
        options["priority"] = int(priority)
    sent = app.send_task(task, args=list(args), kwargs=kwargs, queue=task.queue, ignore_result=not keep_result,
                         **options)
    return sent.id


def wait_for(recorded: Callable[[], T | None], task_id: str | None, timeout: float, poll: float = 0.25, *,
             nothing_recorded: Callable[[Any], str] | None = None) -> T | None:
    """``recorded()`` once it gives something; None when ``timeout`` runs out first. Raises ``TaskFailed`` when
    task ``task_id`` failed and ``recorded()`` still gives nothing (read once more after the failure: a task may
    record its outcome and fail after). ``nothing_recorded``, for a task whose success ends the work: given what
    it returned, why it recorded nothing (``TaskFailed`` too)."""
    deadline = time.monotonic() + timeout
    while True:
        found = recorded()
        if found is not None:
            return found
        error = ended_without_record(task_id, nothing_recorded) if task_id is not None else None
        if error is not None:
            found = recorded()
            if found is not None:
                return found
            raise TaskFailed(task_id or "", error)
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def ended_without_record(task_id: str, nothing_recorded: Callable[[Any], str] | None = None) -> str | None:
    """The error of task ``task_id`` if it failed, was revoked or rejected (or, with ``nothing_recorded``,
    succeeded); None while it is queued or runs, or when its state cannot be read (the database then decides
    alone)."""
    from celery.result import AsyncResult

    from worker.celery_app import app

    try:
        result = AsyncResult(task_id, app=app)
        state = result.state
        if state in _FAILED_STATES:
            return describe(state, result.result)
        if state == "SUCCESS" and nothing_recorded is not None:
            return redact_url(nothing_recorded(result.result))
        return None
    except Exception as exc:  # noqa: BLE001  (the backend unreadable is no reason to stop waiting)
        log.debug("task %s: state unreadable: %s", task_id, exc)
        return None


def describe(state: str, error: Any) -> str:
    """``ConfigError: unknown connector 'a'``; a URL's password shown as ``***``."""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    else:
        text = f"task {state.lower()}" + (f": {error}" if error else "")
    return redact_url(text)
