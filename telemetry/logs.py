"""Logging: one format for our logs and Celery's, chosen by ``JUMPSYNC_LOG_FORMAT`` (``console`` or ``json``).

structlog renders every record, including those of the standard ``logging`` module (Celery, kombu, httpx),
and adds the task context (connector, run id, part, request id) bound when a task starts, so a JSON log line
can be filtered by connector or run without parsing messages. ``extra={...}`` fields of stdlib calls become
keys too. Every line leaves with the passwords of the URLs in it hidden (``_redacted``).
"""

from __future__ import annotations

import inspect
import logging
import logging.config
import os

import structlog

from config.redact import redact

#: Task arguments worth carrying on every log line of the task, and the key they are logged under.
CONTEXT_ARGUMENTS = {"connector": "connector", "run_id": "run_id", "resource_type": "part", "request_id": "request_id"}


def configure(fmt: str | None = None, level: str | None = None) -> None:
    fmt = (fmt or os.environ.get("JUMPSYNC_LOG_FORMAT") or "console").lower()
    level = (level or os.environ.get("JUMPSYNC_LOG_LEVEL") or "INFO").upper()
    if fmt not in ("console", "json"):
        raise ValueError(f"JUMPSYNC_LOG_FORMAT={fmt!r}: use 'console' or 'json'")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"jumpsync": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                           structlog.processors.format_exc_info, renderer, _redacted],
            "foreign_pre_chain": shared,
        }},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "jumpsync"}},
        "root": {"handlers": ["default"], "level": level},
        # httpx logs every request at INFO: useful when debugging, noise otherwise.
        "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
    })
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _redacted(_logger, _method: str, line: str) -> str:
    """The rendered line with the password of any URL in it as ``***`` (config.redact): a library's message or
    a traceback may quote the database or broker URL."""
    return redact(line)


def bind_task_context(task, args: tuple, kwargs: dict) -> None:
    """Put the task's connector / run / part / request on every log line until the task ends."""
    context = {"task": task.name}
    try:
        bound = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except TypeError:  # a malformed message: log what we can
        bound = {}
    for argument, key in CONTEXT_ARGUMENTS.items():
        if argument in bound and isinstance(bound[argument], (str, int)):
            context[key] = bound[argument]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)


def clear_task_context() -> None:
    structlog.contextvars.clear_contextvars()
