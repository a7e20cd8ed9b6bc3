"""The state machines of models.states: the listed moves are the only ones allowed."""

from __future__ import annotations

import itertools

import pytest

from models.states import (
    ACTIVE_RUN_STATUSES,
    PARTS,
    REQUESTS,
    RUNS,
    IllegalTransition,
    PartStatus,
    RequestStatus,
    RunStatus,
)
from models.tables import SyncRun

MACHINES = [(RUNS, RunStatus), (PARTS, PartStatus), (REQUESTS, RequestStatus)]


@pytest.mark.parametrize(("machine", "states"), MACHINES, ids=lambda m: getattr(m, "name", ""))
def test_every_state_has_a_row_in_the_table(machine, states):
    assert set(machine.moves) == set(states)


@pytest.mark.parametrize(("machine", "states"), MACHINES, ids=lambda m: getattr(m, "name", ""))
def test_a_move_not_listed_is_refused(machine, states):
    for current, target in itertools.product(states, states):
        if target in machine.moves[current]:
            assert machine.move(current, target) is target
        else:
            with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
                machine.move(current, target)


def test_a_move_from_several_states_needs_each_listed():
    assert RUNS.move(ACTIVE_RUN_STATUSES, RunStatus.FAILED) is RunStatus.FAILED
    with pytest.raises(IllegalTransition):
        RUNS.move(ACTIVE_RUN_STATUSES, RunStatus.FINALIZING)  # finalizing -> finalizing is no move


def test_rows_start_only_in_an_initial_state():
    assert REQUESTS.create(RequestStatus.PENDING) is RequestStatus.PENDING
    with pytest.raises(IllegalTransition):
        REQUESTS.create(RequestStatus.SUCCEEDED)


def test_ended_states_are_terminal():
    assert RUNS.terminal == {RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.SKIPPED}
    assert REQUESTS.terminal == {RequestStatus.SUCCEEDED, RequestStatus.REJECTED,  # failed may be retried
                                 RequestStatus.DENIED, RequestStatus.EXPIRED}


def test_the_one_active_run_index_names_the_active_statuses():
    index = next(i for i in SyncRun.__table__.indexes if i.name == "uq_sync_runs_one_active")
    predicate = str(index.dialect_options["postgresql"]["where"])
    assert predicate == "status IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE_RUN_STATUSES))


def test_a_status_is_its_string():
    assert RunStatus.RUNNING == "running" and f"{PartStatus.HELD}" == "held"
