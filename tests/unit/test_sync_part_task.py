"""``tasks.sync.sync_part``: the part that completes its run finalizes it in the same task, unless the part used
so much of its time limit that the finalizer is sent, to run with a time limit of its own. The pipeline is
replaced here: what is tested is the task's choice (the whole path runs on real workers in the integration
tests)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from models.states import PartStatus
from pipeline.parts import PartResult
from pipeline.sync import PartStep
from tasks import sync as sync_tasks


@pytest.fixture
def wired(monkeypatch):
    """The task with its pipeline call and its two ways to finalize recorded; ``clock`` drives the elapsed time
    (the part takes ``clock["part"]`` seconds)."""
    calls: list[tuple[str, int]] = []
    clock = {"now": 1000.0, "part": 0.0}
    settings = SimpleNamespace(file=SimpleNamespace(sync=SimpleNamespace(part_time_limit="10m")))

    def run_part(_settings, _engine, run_id, resource_type, connector):
        clock["now"] += clock["part"]
        return PartStep(PartResult(ran=True, status=PartStatus.SUCCEEDED), finalize=resource_type == "group")

    monkeypatch.setattr(sync_tasks.runtime, "settings_for", lambda connector: settings)
    monkeypatch.setattr(sync_tasks.runtime, "engine", lambda: None)
    monkeypatch.setattr(sync_tasks.sync, "run_part", run_part)
    monkeypatch.setattr(sync_tasks.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(sync_tasks, "_finalize", lambda run_id, connector: calls.append(("inline", run_id))
                        or "succeeded")
    monkeypatch.setattr(sync_tasks.sync_finalize, "delay", lambda run_id, connector: calls.append(("sent", run_id)))
    return calls, clock


def test_the_last_part_finalizes_its_run_itself(wired):
    calls, clock = wired
    clock["part"] = 4.0
    assert "run_status" not in sync_tasks.sync_part.run(7, "user", "acme")  # not the last: nothing
    outcome = sync_tasks.sync_part.run(7, "group", "acme")
    assert calls == [("inline", 7)] and outcome["run_status"] == "succeeded"


def test_a_part_that_used_half_its_time_limit_sends_the_finalizer(wired):
    calls, clock = wired
    clock["part"] = 0.5 * 600 + 1  # past half of part_time_limit (10 min)
    outcome = sync_tasks.sync_part.run(7, "group", "acme")
    assert calls == [("sent", 7)] and "run_status" not in outcome
