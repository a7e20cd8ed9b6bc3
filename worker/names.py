"""The names of jumpsync's Celery tasks and queues: the message contract between the processes.

Beat, the CLI, the Python interface and any Celery client send these names; ``tasks/`` registers them. A task
name is part of the interface (Flower shows it, ``send_task`` uses it): renaming one strands the messages
already queued under the old name.
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    #: Syncs, refreshes, discovery, upkeep: long work that must not delay provisioning.
    SYNC = "sync"
    #: Provisioning requests and their relay.
    PROVISIONING = "provisioning"


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


#: Tasks that allocate much and free it at their end: their process gives the memory back after them
#: (``worker.memory``).
HEAVY_TASKS = frozenset({TaskName.SYNC_PART, TaskName.SYNC_FINALIZE, TaskName.SYNC_EVENTS, TaskName.ACCESS_REFRESH,
                         TaskName.HISTORY_PRUNE})
