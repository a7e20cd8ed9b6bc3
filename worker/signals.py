"""Process lifecycle hooks of workers: logging, the metrics exporter and the API clients' response metrics, what
API clients load preloaded before the pool forks, fresh database engines after fork, closing a pool process's
provisioning clients, task context on log lines, and freed memory given back after heavy tasks. Imported by
``worker.celery_app``; plain Celery signals, nothing else."""

from __future__ import annotations

import os

from celery import signals

from telemetry import logs


@signals.setup_logging.connect
def _setup_logging(**_kwargs) -> None:
    """Connected, so Celery leaves logging to us: the same format for our lines and Celery's."""
    logs.configure()


@signals.worker_init.connect
def _start_metrics_exporter(**_kwargs) -> None:
    port = os.environ.get("JUMPSYNC_METRICS_PORT")
    if not port:
        return
    from models.db import get_engine
    from telemetry.metrics import start_exporter
    from worker import runtime

    start_exporter(int(port), lambda: get_engine(runtime.settings().database_url),
                   address=os.environ.get("JUMPSYNC_METRICS_ADDRESS", "0.0.0.0"))


@signals.worker_shutdown.connect
def _remove_metrics_dir(**_kwargs) -> None:
    """The worker's main process, stopping: its pool is gone, and so may be the directory made for its metrics."""
    from telemetry.multiproc import remove_created_dir

    remove_created_dir()


@signals.worker_init.connect
@signals.worker_process_init.connect
def _observe_api_responses(**_kwargs) -> None:
    """Every API client a worker builds counts its responses (``connector.client_factory`` imports no metrics)."""
    from connector.client_factory import observe_responses
    from telemetry.metrics import api_observer

    observe_responses(api_observer)


@signals.worker_init.connect
def _preload_for_the_pool(**_kwargs) -> None:
    """The worker's main process, before its pool forks: what each pool process would otherwise set up in its
    first task, done once and shared: the API clients' lazy imports and TLS context (``jumpcloud.client.preload``)
    and the ORM's mapper configuration."""
    from sqlalchemy.orm import configure_mappers

    import models.tables  # noqa: F401  (the mappers to configure)
    from jumpcloud.client import preload

    preload()
    configure_mappers()


@signals.worker_process_init.connect
def _fresh_engines_after_fork(**_kwargs) -> None:
    """A pool process must not use connections its parent opened (the exporter's): build its own engines."""
    from models.db import get_engine

    get_engine.cache_clear()


@signals.worker_before_create_process.connect
def _share_memory_with_the_pool(**_kwargs) -> None:
    """The pool process about to be forked keeps sharing what its parent imported (``worker.memory``)."""
    from worker.memory import share_with_pool

    share_with_pool()


@signals.worker_process_shutdown.connect
def _mark_process_dead(pid=None, **_kwargs) -> None:
    from telemetry.metrics import mark_process_dead

    mark_process_dead(pid or os.getpid())


@signals.task_prerun.connect
def _bind_context(task=None, args=None, kwargs=None, **_extra) -> None:
    logs.bind_task_context(task, tuple(args or ()), dict(kwargs or {}))


@signals.task_postrun.connect
def _clear_context(**_kwargs) -> None:
    logs.clear_task_context()


@signals.task_postrun.connect
def _release_memory_after_heavy_tasks(task=None, **_kwargs) -> None:
    """After a sync part, a finalize, a refresh or a rendering, the memory they freed goes back to the system,
    so the next task in this process does not start at their peak (``worker.memory``)."""
    from worker.memory import release_freed_memory
    from worker.names import HEAVY_TASKS

    if task is not None and task.name in HEAVY_TASKS:
        release_freed_memory()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_provisioning_clients(**_kwargs) -> None:
    """A process's provisioning loop and clients (``provisioning.clients``) are closed with it: a prefork pool
    process's, or the worker's own on the thread pool."""
    from provisioning import clients

    clients.close()
