"""The names of jumpsync's Celery tasks and queues: the message contract between the processes.

Beat, the CLI, the Python interface and any Celery client send these names; ``tasks/`` registers them. A task
name is part of the interface (Flower shows it, ``send_task`` uses it): renaming one strands the messages
already queued under the old name.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Queue(StrEnum):
    #: Syncs, refreshes, discovery, upkeep: long work that must not delay provisioning.
    SYNC = "sync"
    #: Provisioning requests and their relay.
    PROVISIONING = "provisioning"


class Priority(IntEnum):
    """The order in which a worker takes the messages waiting in its queue: kombu's Redis transport keeps one list
    per step and a worker reads them lowest first. On a busy fleet (an MSP key's organisations all due at once) a
    plain FIFO queue would open every run before finishing any, leave the reaper and the discovery behind
    thousands of parts, and let the reaper take runs that only wait their turn for runs that lost a message."""

    #: Upkeep that keeps everything else moving: the reaper, the discovery, the relay and expiry. Cheap.
    UPKEEP = 0
    #: The parts and finalizer of a run already open: what is started is finished first.
    OPEN_RUN = 3
    #: A sync or refresh someone asked for (``jumpsync sync``, ``up``'s first syncs, a refresh that needs a full
    #: sync), renderings after a run, history pruning: a few at a time, ahead of the schedule, after open runs.
    ASKED = 6
    #: What the schedule sends in bulk: a new full sync, an events refresh. Taken in the order sent, once the work
    #: started is done: a step of their own for refreshes would starve the full syncs whenever an MSP key's
    #: thousand refreshes a minute outran the workers.
    SCHEDULED = 9


#: kombu's Redis transport keeps a queue's first step in the list named as the queue, step n in
#: ``<queue><sep><n>`` (its default ``sep``); the steps are its default ``priority_steps``, which ``Priority``'s
#: values are (kombu files any other value under the step below it).
PRIORITY_SEPARATOR = "\x06\x16"


def queue_lists(queue: Queue) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting messages, in the order a worker reads them."""
    return [queue.value if step == 0 else f"{queue.value}{PRIORITY_SEPARATOR}{int(step)}" for step in Priority]


class TaskName(StrEnum):
    SYNC_CONNECTOR = "jumpsync.sync.connector"
    SYNC_PART = "jumpsync.sync.part"
    SYNC_FINALIZE = "jumpsync.sync.finalize"
    SYNC_EVENTS = "jumpsync.sync.events"
    SYNC_REAP = "jumpsync.sync.reap"
    HISTORY_PRUNE = "jumpsync.history.prune"
    ACCESS_REFRESH = "jumpsync.access.refresh"
    MSP_DISCOVER = "jumpsync.msp.discover"
    PROVISION_SUBMIT = "jumpsync.provision.submit"
    PROVISION_APPLY = "jumpsync.provision"
    PROVISION_RELAY = "jumpsync.provision.relay"
    PROVISION_EXPIRE = "jumpsync.provision.expire"

    @property
    def queue(self) -> Queue:
        """The queue this task is routed to."""
        return Queue.PROVISIONING if self.value.startswith("jumpsync.provision") else Queue.SYNC

    @property
    def priority(self) -> Priority:
        """The step this task's messages are sent at (``Priority``); provisioning requests share their queue only
        with the relay and expiry, and go at the first step like them."""
        return _PRIORITIES.get(self, Priority.UPKEEP)


_PRIORITIES = {TaskName.SYNC_PART: Priority.OPEN_RUN, TaskName.SYNC_FINALIZE: Priority.OPEN_RUN,
               TaskName.ACCESS_REFRESH: Priority.ASKED, TaskName.HISTORY_PRUNE: Priority.ASKED,
               TaskName.SYNC_EVENTS: Priority.SCHEDULED, TaskName.SYNC_CONNECTOR: Priority.SCHEDULED}


#: Tasks that allocate much and free it at their end: their process gives the memory back after them
#: (``worker.memory``).
HEAVY_TASKS = frozenset({TaskName.SYNC_PART, TaskName.SYNC_FINALIZE, TaskName.SYNC_EVENTS, TaskName.ACCESS_REFRESH,
                         TaskName.HISTORY_PRUNE})
