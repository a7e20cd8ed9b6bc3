"""One chaos scenario's measurement: the load and the sync it disturbs, the fault's end, the time until the fleet
has recovered, and what was lost or duplicated, as a row of the report."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from models.states import RunStatus
from tests.chaos.fleet import Stack
from tests.chaos.load import WRITE_ROUTES, Load, account, all_ended, insights_events, outcomes, plan_changes
from tests.chaos.report import Report, Row
from tests.support.constants import TEST_API_KEY
from tests.support.expected import assert_same, expected_state

T = TypeVar("T")
_loads = itertools.count(1)

#: How often the scenario looks at the database while it waits (the times measured are this precise).
POLL = 0.5


class Scenario:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.began = time.monotonic()
        self.since = datetime.now(timezone.utc)
        self.writes_before = self._writes()
        self.load: Load | None = None
        self.sync_task: str | None = None
        self.fault_end: float | None = None
        self.runs: list[str] = []  # how each sync of the scenario ended, in order
        self.final: tuple = ()     # (the database's state, the tenant's) after the last sync
        self.failed = 0            # requests that ended other than succeeded
        self.milestones: dict[str, Callable[[], object]] = {}  # watched while it recovers (``watch``)
        self.reached: dict[str, float] = {}                    # seconds from the fault's end to each

    # --- what the scenario does ----------------------------------------------------------------------------
    def submit(self, count: int, over: float, burst: int = 0) -> None:
        """``count`` requests from the client process: ``burst`` of them at once, the rest spread over ``over``
        seconds. The client retries a refused submission for up to 5 minutes."""
        changes = plan_changes(self.stack.sim.dump(), count, self.stack.used_users)
        spread = count - burst
        after = [0.0] * burst + [over * i / max(1, spread) for i in range(spread)]
        self.load = Load(self.stack.directory, f"load-{next(_loads)}", self.stack.fleet.env,
                         self.stack.connector, changes, after, deadline=over + 300)

    def sync(self) -> str:
        self.sync_task = self.stack.trigger_sync()
        return self.sync_task

    def fault_ended(self) -> None:
        self.fault_end = time.monotonic()

    def watch(self, name: str, condition: Callable[[], object]) -> None:
        """Note when ``condition()`` first holds during the recovery (e.g. the part handed over)."""
        self.milestones[name] = condition

    def wait_for(self, condition: Callable[[], T], what: str, timeout: float = 60) -> T:
        """``condition()``'s first truthy value, asked every tenth of a second; a database or broker error
        counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            found = _quietly(condition)
            if found:
                return found
            assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
            time.sleep(0.1)

    # --- what it measures ----------------------------------------------------------------------------------
    def recover(self, timeout: float) -> float:
        """Seconds from the fault's end until the scenario's sync succeeded (a new one is sent when it ended
        otherwise) and every request submitted has its outcome."""
        assert self.fault_end is not None, "the scenario never said its fault ended"
        deadline = self.fault_end + timeout
        sync_ok = None if self.sync_task else self.fault_end
        requests_ok = None if self.load else self.fault_end
        while sync_ok is None or requests_ok is None:
            assert time.monotonic() < deadline, (
                f"not recovered {timeout}s after the fault: sync {'ok' if sync_ok else self._run_state()}, "
                f"requests {'ok' if requests_ok else self._requests_state()}")
            if sync_ok is None and _quietly(self._sync_succeeded):
                sync_ok = time.monotonic()
            if requests_ok is None and _quietly(self._requests_ended):
                requests_ok = time.monotonic()
            self._look_at_milestones()
            time.sleep(POLL)
        self._look_at_milestones()
        return max(sync_ok, requests_ok) - self.fault_end

    def _look_at_milestones(self) -> None:
        assert self.fault_end is not None
        for name, condition in self.milestones.items():
            if name not in self.reached and _quietly(condition):
                self.reached[name] = time.monotonic() - self.fault_end

    def _sync_succeeded(self) -> bool:
        assert self.sync_task is not None
        run = self.stack.run(self.sync_task)
        if run is None or run.finished_at is None:
            return False
        self.runs.append(run.status)
        if run.status == RunStatus.SUCCEEDED:
            return True
        if run.status == RunStatus.SKIPPED:
            time.sleep(2)  # another run holds the connector: ask again when it may be done
        self.sync_task = self.stack.trigger_sync()  # what an operator (or the next trigger) does
        return False

    def _requests_ended(self) -> bool:
        assert self.load is not None
        if not self.load.done:
            return False
        keys = [key for key, request_id in self.load.accepted().items() if request_id]
        return all_ended(outcomes(self.stack.engine, self.stack.connector, keys), keys)

    def _run_state(self) -> str:
        run = _quietly(lambda: self.stack.run(self.sync_task)) if self.sync_task else None
        return f"{run.status}: {[(p.name, p.status, p.attempt) for p in run.parts]}" if run else "no run"

    def _requests_state(self) -> str:
        assert self.load is not None
        keys = list(self.load.accepted())
        statuses = _quietly(lambda: outcomes(self.stack.engine, self.stack.connector, keys)) or {}
        counts: dict[str, int] = {}
        for status in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return f"client done {self.load.done}, {len(keys)} accepted, {counts}"

    def _writes(self) -> int:
        by_route = self.stack.sim.stats()["by_route"]
        return sum(by_route.get(route, 0) for route in WRITE_ROUTES)

    def finish(self, fault: str, operator_sees: str, bound: float, notes: list[str],
               killed: tuple[str, ...] = ()) -> Row:
        """Wait for the recovery (at most 3 × ``bound``), compare the database with the tenant (after one more
        sync if they differ), count, and say it as a row. The caller adds the row to the report, then asserts."""
        recovery = self.recover(timeout=3 * bound)
        dump = self.stack.sim.dump()
        expected, actual = expected_state(dump), self.stack.state()
        if actual != expected:  # what the writes through and the run left differs: the next sync must settle it
            last = self.stack.sync_and_wait()
            assert last.status == RunStatus.SUCCEEDED, last
            notes = [*notes, "database = tenant after one more sync"]
            dump = self.stack.sim.dump()
            expected, actual = expected_state(dump), self.stack.state()
        missing = len(expected.resources - actual.resources) + len(expected.grants - actual.grants)
        lost, duplicated = missing, 0
        if self.load is not None:
            accepted = self.load.accepted()
            changes = self.load.changes
            statuses = outcomes(self.stack.engine, self.stack.connector, list(accepted))
            counted = account(changes, statuses, dump, insights_events(self.stack.sim.url, TEST_API_KEY, self.since),
                              self._writes() - self.writes_before)
            lost += counted.lost + sum(request_id is None for request_id in accepted.values())
            duplicated, self.failed = counted.duplicated, counted.failed
            notes = [*notes, f"{len(changes)} requests"
                     + (f", {self.load.retried()} retried by the client" if self.load.retried() else "")
                     + (f", {counted.failed} failed" if counted.failed else "")]
            resent = counted.writes - len(changes)
            if resent > 0:
                notes.append(f"{resent} writes sent again, found done")
        if self.runs and self.runs[0] != RunStatus.SUCCEEDED:
            notes.append(f"the run ended {self.runs[0]}; the next succeeded")
        exits = self.stack.unexpected_exits(self.began, killed)
        if exits:
            notes.append("restarted: " + ", ".join(f"{name} ×{n}" for name, n in sorted(exits.items())))
        self.final = (actual, expected)
        return Row(fault, operator_sees, recovery, bound, lost, duplicated, "; ".join(notes))

    def report_and_check(self, report: Report, row: Row) -> None:
        """The row into the report (whether or not it passes), then ``check``."""
        report.rows.append(row)
        self.check(row)

    def check(self, row: Row) -> None:
        """What every scenario promises: nothing lost, nothing applied twice, recovered within its bound, and
        the database equal to the tenant after the last sync."""
        assert row.lost == 0, row
        assert row.duplicated == 0, row
        assert row.recovery <= row.bound, row
        assert self.failed == 0, row
        assert_same(*self.final)


def _quietly(read: Callable[[], T]) -> T | None:
    """``read()``, or None while the database or the broker does not answer."""
    try:
        return read()
    except (DBAPIError, BrokerError, RedisError, ConnectionError, OSError):
        return None
