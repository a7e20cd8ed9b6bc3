"""MSP discovery task: a thin wrapper that calls ``msp.discovery``. The argument is the ``[[msp]]`` table's
name, never its key."""

from __future__ import annotations

from celery import shared_task

from msp import discovery
from worker import runtime
from worker.beat import announce_discovery
from worker.names import TaskName


@shared_task(name=TaskName.MSP_DISCOVER)
def msp_discover(msp: str) -> dict:
    """List the organisations of one MSP key and record them; their connectors reach every worker within
    seconds (``worker.runtime``), and beat, told of the change, schedules the new ones at its next tick."""
    settings = runtime.settings()
    result = discovery.discover(runtime.engine(), settings, msp)
    if result.changed:
        announce_discovery(settings.broker_url)
    return result.to_dict()
