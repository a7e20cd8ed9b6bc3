"""An interrupted first sync holds up nothing: Ctrl-C on ``jumpsync up`` while the sync's parts run leaves its
run active (a part cut short past the worker's grace); the next ``jumpsync up --once``
fails that run as abandoned before its workers start and syncs at once, instead of skipping every trigger for
an interval (here 6 h)."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.db import make_engine
from models.queries import run_record
from models.states import PartStatus, RunStatus
from models.tables import SyncRun
from tests.support.constants import TEST_API_KEY
from tests.support.runs import latest_run
from tests.support.servers import RedisServer, free_port
from tests.support.up_process import JUMPSYNC, clean_env

pytestmark = [pytest.mark.integration, pytest.mark.long]

KEY_ENV = "UP_RECOVERY_TEST_API_KEY"  # not JUMPSYNC_*: up's environment keeps it (tests.support.up_process)
#: Long after the second up's first sync, were it to wait for the schedule.
INTERVAL = "6h"
#: What "promptly" means for the second up: start, recover, one sync of the small tenant, stop.
PROMPTLY = 120.0


def _configure(folder, sim, monkeypatch) -> None:
    """Connector ``acme`` on ``sim`` in the folder's jumpsync.toml: a full sync every ``INTERVAL``, no events."""
    monkeypatch.setenv(KEY_ENV, TEST_API_KEY)
    (folder / "jumpsync.toml").write_text(
        f'[[connectors]]\nname = "acme"\nbase_url = "{sim.url}"\napi_key_env = "{KEY_ENV}"\n'
        f'interval = "{INTERVAL}"\nevents = false\ntimeout = 120\n')


def _up_once(folder, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """``jumpsync up --once`` in the folder, and how long it took."""
    started = time.monotonic()
    done = subprocess.run(JUMPSYNC + ["up", "--once", "--flower-port", str(free_port()), "--api-port",
                                      str(free_port()), "--concurrency", "2"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=PROMPTLY + 60)
    return done, time.monotonic() - started


def _wait_for(handle, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in handle.output():
            return
        assert handle.proc.poll() is None, f"jumpsync up exited {handle.proc.returncode}:\n{handle.output()}"
        time.sleep(0.25)
    raise AssertionError(f"no {text!r} within {timeout}s:\n{handle.output()}")


@pytest.mark.parametrize(("delay", "left"), [
    # The user listing's first answer outlasts the worker's 30 s of grace, with room for the processes stopped
    # before it: the part is cut short, the run stays running. (An answer within the grace lets the part end
    # and finalize the run itself. A run left finalizing is failed by the same rule:
    # tests/integration/test_reaper.py, on both databases.) The simulator stops waiting once the worker is gone.
    (100_000, RunStatus.RUNNING),
])
def test_an_interrupted_first_sync_does_not_hold_up_the_next_up(up, tmp_path, simulator, monkeypatch, delay, left):
    sim = simulator()
    _configure(tmp_path, sim, monkeypatch)
    sim.set_faults({"rules": [{"path": "^/api/systemusers$", "delay_ms": delay, "times": 1}]})
    first = up()
    for part in ("admin", "group", "app"):
        _wait_for(first, f"acme: {part:<14} succeeded")
    _wait_for(first, f"acme: {'user':<14} running")
    first.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.proc.wait(timeout=90) == 0, first.output()
    engine = make_engine(f"sqlite:///{tmp_path / 'jumpsync.db'}")
    interrupted = latest_run(engine, "acme")
    assert interrupted.status == left, interrupted

    sim.clear_faults()
    second, took = _up_once(tmp_path, clean_env())
    out = " ".join(second.stdout.split())
    assert second.returncode == 0, second.stdout
    assert took < PROMPTLY, out
    assert (f"acme: run {interrupted.id} was left {left} by an earlier jumpsync up (its messages died with that "
            "up's Redis): marked failed; syncing again now") in out
    assert "acme: first sync succeeded" in out
    synced = latest_run(engine, "acme")
    assert synced.id > interrupted.id and synced.status == RunStatus.SUCCEEDED
    with Session(engine) as session:
        old = run_record(session, session.get(SyncRun, interrupted.id))
    assert old.status == RunStatus.FAILED and old.error.startswith("abandoned: left active by an earlier jumpsync up")
    assert not {p.status for p in old.parts} & {PartStatus.PENDING, PartStatus.RUNNING}


def test_up_on_a_given_broker_syncs_at_once_when_the_last_run_did_not_succeed(tmp_path, simulator, monkeypatch):
    """With ``JUMPSYNC_BROKER_URL`` beat's schedule lives on in that Redis: the next sync would come an interval
    after the last. ``up`` sends it itself when that last run did not succeed."""
    sim = simulator()
    _configure(tmp_path, sim, monkeypatch)
    broker = RedisServer(tmp_path / "broker").start()
    try:
        env = {**clean_env(), "JUMPSYNC_BROKER_URL": broker.url}
        sim.set_faults({"rules": [{"path": "^/api/systemusers$", "status": 500}]})
        first, _ = _up_once(tmp_path, env)
        assert first.returncode == 1 and "acme: first sync partial" in first.stdout, first.stdout
        sim.clear_faults()
        second, took = _up_once(tmp_path, env)
    finally:
        broker.stop()
    out = " ".join(second.stdout.split())
    assert second.returncode == 0, second.stdout
    assert took < PROMPTLY, out
    assert "acme: the last sync did not succeed: syncing again now" in out
    assert "acme: first sync succeeded" in out
    engine = make_engine(f"sqlite:///{tmp_path / 'jumpsync.db'}")
    with Session(engine) as session:  # beat did not send one too: no skip recorded
        statuses = session.execute(select(SyncRun.status).order_by(SyncRun.id)).scalars().all()
    assert statuses == [RunStatus.PARTIAL, RunStatus.SUCCEEDED]
