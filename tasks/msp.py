"""MSP discovery task: a thin wrapper that calls ``pipeline.discovery``. The argument is the ``[[msp]]`` table's
name, never its key."""

from __future__ import annotations

from celery import shared_task

from pipeline import discovery
from worker import runtime


@shared_task(name="jumpsync.msp.discover")
def msp_discover(msp: str) -> dict:
    """List the organisations of one MSP key and record them; their connectors reach every worker and beat
    within seconds (``worker.runtime``), and beat schedules the new ones at once."""
    return discovery.discover(runtime.engine(), runtime.settings(), msp).to_dict()
