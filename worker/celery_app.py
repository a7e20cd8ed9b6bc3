"""The Celery application: broker, queues, reliability settings and the beat scheduler.

Delivery is at-least-once: tasks are acknowledged after they run (``task_acks_late``) and given back to the
queue when their worker process dies (``task_reject_on_worker_lost``), one message at a time per process
(prefetch 1). The pipeline is written so that running a message twice is harmless.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from config.settings import Settings, parse_duration
from worker import signals  # noqa: F401  (connects the process hooks)
from worker.names import Queue, TaskName
from worker.results import backend_url
from worker.runtime import settings


def create_app() -> Celery:
    current = settings()
    part_limit = int(parse_duration(current.file.sync.part_time_limit).total_seconds())
    app = Celery("jumpsync", include=["tasks.sync", "tasks.provision", "tasks.access", "tasks.msp"])
    app.conf.update(
        broker_url=current.broker_url,
        broker_connection_retry_on_startup=True,
        # A message not acknowledged within this time is given to another worker: longer than any task.
        broker_transport_options={
            "visibility_timeout": int(parse_duration(current.file.sync.visibility_timeout).total_seconds()),
            # kombu looks for timed-out messages every interval × throttle seconds (10 × 10 by default), which
            # would add up to 100 s to visibility_timeout; look every 10 s instead.
            "unacked_restore_interval": 10, "unacked_restore_throttle": 1,
        },
        task_default_queue=Queue.SYNC,
        # Each task's queue, and its step in it (worker.names.Priority).
        task_routes={task.value: {"queue": task.queue.value, "priority": int(task.priority)}
                     for task in TaskName},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=part_limit,
        task_time_limit=part_limit + 60,
        # Results are kept only for the messages a command waits for (worker.waiting.send), in the broker's
        # Redis, which expires them itself (so beat adds no cleanup entry); Celery censors the URL's password
        # wherever it shows its settings.
        task_ignore_result=True,
        result_backend=backend_url(current.broker_url),
        result_expires=24 * 3600,
        task_serializer="json",
        accept_content=["json"],
        # Events for Flower, including when a task is sent.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        # The beat scheduler keeps its entries in Redis, with a lock so that only one beat sends.
        beat_scheduler="worker.beat:ConnectorScheduler",
        # (redbeat_redis_url is set where RedBeat is used, worker.beat.redbeat_on_broker: not here, where a worker
        # would hand it, password and all, to `celery inspect conf` and Flower's worker page.)
        redbeat_key_prefix="jumpsync:beat:",
        redbeat_lock_timeout=60,
        beat_max_loop_interval=5,
        beat_schedule=_beat_schedule(current),
    )
    return app


def _beat_schedule(current: Settings) -> dict:
    """The fixed entries; the per-connector syncs are added by the scheduler (worker.beat)."""
    schedule = {
        "sync-reaper": {"task": TaskName.SYNC_REAP, "schedule": 60.0, "options": {"queue": Queue.SYNC}},
        "history-prune": {"task": TaskName.HISTORY_PRUNE, "schedule": crontab(minute=17, hour=3),
                          "options": {"queue": Queue.SYNC}},
        "provisioning-relay": {
            "task": TaskName.PROVISION_RELAY,
            "schedule": parse_duration(current.file.provisioning.relay_interval).total_seconds(),
            "options": {"queue": Queue.PROVISIONING},
        },
        # Requests nobody approved in time end expired; a minute late at most.
        "provisioning-expire": {"task": TaskName.PROVISION_EXPIRE, "schedule": 60.0,
                                "options": {"queue": Queue.PROVISIONING}},
    }
    if current.file.access.snapshots:
        interval = parse_duration(current.file.access.refresh_interval).total_seconds()
        # Expires after one interval: a backlog of refreshes is not worth working through.
        schedule["access-refresh"] = {"task": TaskName.ACCESS_REFRESH, "schedule": interval,
                                      "options": {"queue": Queue.SYNC, "expires": interval}}
    return schedule


app = create_app()
