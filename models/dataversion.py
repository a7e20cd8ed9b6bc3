"""A connector's data version: whether its resources and grants may have changed since a moment.

The version is the connector's latest sync run (skipped triggers aside) and ``Connector.data_version``, a
counter. It is honest because of one rule, kept by ``commit_write``, through which every write to resources
and grants commits:

- a write of a sync run (``run_id``) commits only while that run is active; a part that outlived its run (the
  reaper failed the run after its worker was presumed dead) raises ``RunEnded`` and writes nothing. On
  PostgreSQL the check holds a share lock on the run's row until the commit, so the reaper cannot end the run
  in between; on SQLite the check is a write in the same transaction (writers take turns anyway);
- a write outside any run (provisioning's write-through, tools) bumps the counter in its own transaction;
- an incremental run (trigger ``events``, pipeline.incremental) is no version of its own (``_LATEST_RUN`` skips
  it): its writes commit by the first rule and also bump the counter, so a refresh that wrote nothing leaves
  the stored renderings current.

So the data changed since a version was read if and only if a (full) run was active then, a newer one started,
or the counter moved. ``access.snapshot_store`` serves stored renderings of the report and export by that.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select, update
from sqlmodel import Session

from models.states import ACTIVE_RUN_STATUSES, RunStatus, Trigger
from models.tables import Connector, SyncRun, table_of

_CONNECTORS = table_of(Connector)
_RUNS = table_of(SyncRun)

#: The runs a data version can name: full syncs, skips aside.
_VERSION_RUNS = (_RUNS.c.status != RunStatus.SKIPPED, _RUNS.c.trigger != Trigger.EVENTS)
#: Ordered by id, which only grows: ``started_at`` comes from each host's clock.
_LATEST_RUN = (select(_RUNS.c.id, _RUNS.c.status).where(_RUNS.c.connector_id == bindparam("cid"), *_VERSION_RUNS)
               .order_by(_RUNS.c.id.desc()).limit(1))
_COUNTER = select(_CONNECTORS.c.data_version).where(_CONNECTORS.c.id == bindparam("cid"))
_BUMP = (update(_CONNECTORS).where(_CONNECTORS.c.id == bindparam("cid"))
         .values(data_version=_CONNECTORS.c.data_version + 1))
_ACTIVE = _RUNS.c.id == bindparam("run_id"), _RUNS.c.status.in_(ACTIVE_RUN_STATUSES)
#: PostgreSQL: the run is active, and stays so until this transaction ends (the reaper's UPDATE waits).
_HOLD_ACTIVE_RUN = select(_RUNS.c.trigger).where(*_ACTIVE).with_for_update(read=True)
#: SQLite: the same as a write, so that it is in the write transaction (pysqlite starts one at the first write).
_TOUCH_ACTIVE_RUN = update(_RUNS).where(*_ACTIVE).values(status=_RUNS.c.status).returning(_RUNS.c.trigger)


class RunEnded(RuntimeError):
    """A sync part tried to write after its run had ended; nothing of that transaction was written."""


@dataclass(frozen=True)
class DataVersion:
    """What the connector's data is at: its latest sync run, and its count of writes outside runs."""

    run_id: int | None
    counter: int

    def same_as(self, other: DataVersion) -> bool:
        return (self.run_id, self.counter) == (other.run_id, other.counter)


@dataclass(frozen=True)
class CurrentVersion(DataVersion):
    """A version read now, and whether the latest run is still active (its data still moving)."""

    run_active: bool = False


def data_version(connection: Connection, connector_id: int) -> CurrentVersion:
    run = connection.execute(_LATEST_RUN, {"cid": connector_id}).first()
    counter = connection.execute(_COUNTER, {"cid": connector_id}).scalar_one()
    return CurrentVersion(run_id=run.id if run else None, counter=counter,
                          run_active=bool(run and run.status in ACTIVE_RUN_STATUSES))


def latest_run_ids():
    """A subquery: the id of every connector's latest full sync run, skips aside (its data version's run, and the
    last run ``status`` shows)."""
    return select(func.max(_RUNS.c.id)).where(*_VERSION_RUNS).group_by(_RUNS.c.connector_id)


def data_versions(connection: Connection) -> dict[int, CurrentVersion]:
    """``data_version`` of every connector, in two queries whatever their number (``status`` with an MSP key's
    organisations)."""
    runs = {cid: (rid, status) for rid, cid, status in connection.execute(
        select(_RUNS.c.id, _RUNS.c.connector_id, _RUNS.c.status).where(_RUNS.c.id.in_(latest_run_ids())))}
    out = {}
    for cid, counter in connection.execute(select(_CONNECTORS.c.id, _CONNECTORS.c.data_version)):
        rid, status = runs.get(cid, (None, None))
        out[cid] = CurrentVersion(run_id=rid, counter=counter, run_active=status in ACTIVE_RUN_STATUSES)
    return out


def bump_data_version(connection: Connection, connector_id: int) -> None:
    """Record, in the caller's transaction, that the connector's data changed outside a sync run."""
    connection.execute(_BUMP, {"cid": connector_id})


def commit_write(session: Session, connector_id: int, run_id: int | None) -> None:
    """Commit the session's writes to the connector's resources or grants by the rule above."""
    connection = session.connection()
    if run_id is None:
        bump_data_version(connection, connector_id)
    else:
        statement = _HOLD_ACTIVE_RUN if connection.dialect.name == "postgresql" else _TOUCH_ACTIVE_RUN
        trigger = connection.execute(statement, {"run_id": run_id}).scalar_one_or_none()
        if trigger is None:
            session.rollback()
            raise RunEnded(f"sync run {run_id} is no longer active (the reaper ended it): this part's writes "
                           "are dropped")
        if trigger == Trigger.EVENTS:
            bump_data_version(connection, connector_id)
    session.commit()
