"""The result backend: Celery's Redis backend, on the broker's Redis, read by polling.

``worker.waiting`` reads a task's state with a plain GET now and then. Celery's Redis backend would also
subscribe to the task's result channel each time a message that keeps its result is sent (for
``AsyncResult.get``, which jumpsync never calls): a second connection per send, retried for many seconds when
Redis is down, where a send must fail fast and leave the request to the relay (``jumpsync.api.enqueue``).
"""

from __future__ import annotations

from celery.backends.redis import RedisBackend


class PolledRedisBackend(RedisBackend):
    """Results stored as usual; nothing subscribed when a task is sent."""

    def on_task_call(self, producer, task_id) -> None:
        """No subscription: results are polled."""


def backend_url(broker_url: str) -> str:
    """``result_backend`` for a Redis broker: this backend on the same server and database."""
    return f"{__name__}:{PolledRedisBackend.__name__}+{broker_url}"
