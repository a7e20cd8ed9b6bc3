"""The three steps a sync takes, as the Celery tasks call them: begin, run a part, finalize; and the
incremental refresh between syncs (``refresh_events``).

Each takes the resolved settings and an engine, so tests drive a whole sync without a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine

from config.settings import ConfigError, Settings, parse_duration
from connector.client_factory import ClientFactory, make_client
from models.states import PartStatus, Trigger
from pipeline import incremental
from pipeline.claims import claim_part, end_part
from pipeline.derived import run_derived_parts
from pipeline.fanin import RunSummary, finish_run, try_begin_finalize
from pipeline.parts import PartResult, run_fetch_part
from pipeline.runs import StartResult, start_run

log = logging.getLogger(__name__)


def begin(settings: Settings, engine: Engine, connector_name: str, *, trigger: Trigger,
          task_id: str | None = None, wait_for_refresh: bool = True) -> StartResult:
    """Open a run for the connector (or record it skipped; ``retry`` when an incremental refresh runs and
    ``wait_for_refresh``). Raises ConfigError for an unknown connector."""
    connector = settings.connector(connector_name)
    result = start_run(engine, connector, trigger=trigger, task_id=task_id,
                       stale_after=parse_duration(settings.file.sync.stale_run_after),
                       wait_for_refresh=wait_for_refresh)
    if result.skipped:
        log.info("sync skipped", extra={"connector": connector_name, "run_id": result.run_id,
                                        "reason": result.reason})
    return result


@dataclass(frozen=True)
class PartStep:
    result: PartResult
    finalize: bool


def run_part(settings: Settings, engine: Engine, run_id: int, resource_type: str,
             connector_name: str, client_factory: ClientFactory | None = None) -> PartStep:
    """Run one fetch part, then say whether the caller should finalize the run."""
    client_factory = client_factory or partial(make_client, broker_url=settings.broker_url)
    try:
        connector = settings.connector(connector_name)
    except ConfigError as exc:  # the connector was removed from the config while its run was under way
        claim = claim_part(engine, run_id, resource_type)
        if claim.attempt is not None:
            end_part(engine, run_id, resource_type, claim.attempt, status=PartStatus.FAILED, error=str(exc))
        return PartStep(PartResult(ran=False, reason=str(exc)),
                        try_begin_finalize(engine, run_id, again=claim.attempt is None))
    result = run_fetch_part(engine, connector, run_id, resource_type, client_factory, settings.file.sync)
    # A delivery that found its part already ended (redelivered) asks for the finalizer again.
    return PartStep(result, try_begin_finalize(engine, run_id, again=not result.ran))


def finalize(engine: Engine, run_id: int) -> RunSummary:
    """Run the derived parts and set the run's final status. Idempotent; a finalizer re-sent by the reaper
    for a run whose last part died before flipping it to ``finalizing`` flips it first."""
    try_begin_finalize(engine, run_id)
    run_derived_parts(engine, run_id)
    return finish_run(engine, run_id)


def refresh_events(settings: Settings, engine: Engine, connector_name: str) -> incremental.RefreshResult | None:
    """One incremental refresh of the connector from its Directory Insights events; None when the connector has
    them turned off (``events = false``) or is no longer configured."""
    try:
        connector = settings.connector(connector_name)
    except ConfigError:
        return None
    if not connector.events:
        return None
    return incremental.refresh(engine, connector, broker_url=settings.broker_url)
