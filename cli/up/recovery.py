"""What ``jumpsync up`` does, before its workers start, about the runs an interrupted earlier one left active.

A run moves on only through its messages (its parts; the last one finalizes it), and those live on the broker. The
Redis ``up`` starts is new and empty each time: every message sent through an earlier ``up``'s Redis died with
it, so a run that one left ``running`` or ``finalizing`` can never end by itself, and it would make every
trigger of its connector a recorded skip until ``stale_run_after``. ``up`` therefore fails such runs, with the
reason, before its workers start, and sends every connector's first sync itself once they run: beat rebuilds a
schedule missing from Redis from the database's last runs (``worker.beat.last_triggers``), so it would wait for
each connector's next time. This holds only when ``up`` started the broker: with ``JUMPSYNC_BROKER_URL`` the
messages may still be queued, and the reaper moves those runs on (``pipeline.reaper``); ``up`` then sends the
first sync itself only for a connector whose last run ended without succeeding, since beat's schedule there
carries on from that run.

It takes the database to be its own for its connectors: ``up`` with its own Redis must not share a database
with a running deployment that syncs the same connectors (their syncs would skip each other anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from config.settings import Settings
from models.states import RunStatus, Trigger
from pipeline.runs import AbandonedRun, abandon_orphaned_runs

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: Why the runs of an earlier ``up`` are failed: the run's error says it after ``abandoned:``.
LEFT_BY_EARLIER_UP = "left active by an earlier jumpsync up; its messages died with that up's Redis"


def connector_names(settings: Settings, engine: Engine) -> list[str]:
    """The connectors this ``up`` syncs: the file's, and those its ``[[msp]]`` tables discovered so far."""
    if not settings.file.msp:
        return [c.name for c in settings.connectors]
    from msp.views import discovered_connectors

    return [c.name for c in settings.with_discovered(discovered_connectors(engine, settings.file)).connectors]


def abandon_runs_of_earlier_up(engine: Engine, settings: Settings, console: Console) -> list[AbandonedRun]:
    """Fail the runs of this ``up``'s connectors left active by an earlier one; call it only when ``up`` started
    its own, empty, broker and before its workers start. Says which."""
    abandoned = abandon_orphaned_runs(engine, connector_names(settings, engine), reason=LEFT_BY_EARLIER_UP)
    for run in abandoned:
        console.print(escape(f"{run.connector}: run {run.run_id} was left {run.status} by an earlier jumpsync up "
                             "(its messages died with that up's Redis): marked failed; syncing again now"))
    return abandoned


def unfinished_connectors(engine: Engine, names: list[str]) -> list[str]:
    """Those of ``names`` whose last full sync ended without succeeding (failed, partial: interrupted or not)."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from models.queries import last_full_run
    from models.tables import Connector

    with Session(engine) as session:
        ids = dict(session.execute(select(col(Connector.name), col(Connector.id))
                                   .where(col(Connector.name).in_(names))).tuples().all())
        out = []
        for name in names:
            run = last_full_run(session, ids[name]) if name in ids else None
            if run is not None and run.finished_at is not None and run.status != RunStatus.SUCCEEDED:
                out.append(name)
        return out


def trigger_unfinished(engine: Engine, settings: Settings, console: Console) -> list[str]:
    """With a broker ``up`` did not start (beat's schedule in it carries on from the last run): send the first
    sync now for each connector whose last run did not succeed. Says which."""
    names = unfinished_connectors(engine, connector_names(settings, engine))
    for name in names:
        _send_sync(name)
        console.print(escape(f"{name}: the last sync did not succeed: syncing again now"))
    return names


def trigger_first_syncs(engine: Engine, settings: Settings) -> list[str]:
    """With the broker ``up`` started (new and empty): send every known connector's first sync now. A connector
    an ``[[msp]]`` table discovers later is new to beat, which sends its first sync at once."""
    names = connector_names(settings, engine)
    for name in names:
        _send_sync(name)
    return names


def _send_sync(name: str) -> None:
    from worker.names import Priority, TaskName
    from worker.waiting import send

    send(TaskName.SYNC_CONNECTOR, name, keep_result=False, priority=Priority.ASKED, trigger=Trigger.MANUAL)
