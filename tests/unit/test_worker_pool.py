"""``jumpsync worker``'s pool: threads for a provisioning-only worker (its requests wait for JumpCloud), prefork
otherwise; a worker on threads sizes its database pool to its requests in flight."""

from __future__ import annotations

import os

import pytest

from cli.processes import WorkerPool, pool_for
from models.db import POOL_SIZE_ENV, make_engine


@pytest.mark.parametrize(("queues", "pool", "chosen"), [
    ("provisioning", WorkerPool.AUTO, WorkerPool.THREADS),
    (" provisioning ", WorkerPool.AUTO, WorkerPool.THREADS),
    ("sync", WorkerPool.AUTO, WorkerPool.PREFORK),
    ("sync,provisioning", WorkerPool.AUTO, WorkerPool.PREFORK),  # syncs need processes (CPU, time limits)
    ("provisioning", WorkerPool.PREFORK, WorkerPool.PREFORK),
    ("sync", WorkerPool.THREADS, WorkerPool.THREADS),
])
def test_the_pool_follows_the_queues_unless_told(queues, pool, chosen):
    assert pool_for(queues, pool) is chosen


def test_the_worker_command_execs_celery_with_the_chosen_pool(monkeypatch):
    import config.settings
    from cli import processes
    from worker import runtime

    execs: list[tuple[str, ...]] = []
    monkeypatch.setattr(processes, "_celery", lambda *args: execs.append(args))
    monkeypatch.setattr(processes, "use_config", lambda _config: None)
    monkeypatch.setattr(runtime, "settings", lambda: None)
    monkeypatch.setattr(config.settings, "check_api_keys", lambda _settings: None)
    monkeypatch.delenv(POOL_SIZE_ENV, raising=False)
    processes.worker(config=None, queues="provisioning", concurrency=None, pool=WorkerPool.AUTO, name="",
                     loglevel="INFO")
    assert ("-P", "threads") == execs[0][3:5] and execs[0][5:7] == ("-c", "16")
    assert os.environ[POOL_SIZE_ENV] == "18"  # a connection for each request in flight, and two more
    monkeypatch.delenv(POOL_SIZE_ENV)
    processes.worker(config=None, queues="sync", concurrency=None, pool=WorkerPool.AUTO, name="",
                     loglevel="INFO")
    assert execs[1][3:7] == ("-P", "prefork", "-c", "4") and POOL_SIZE_ENV not in os.environ


def test_the_engine_pool_takes_its_size_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(POOL_SIZE_ENV, "18")
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    assert engine.pool.size() == 18
    monkeypatch.delenv(POOL_SIZE_ENV)
    assert make_engine(f"sqlite:///{tmp_path / 'b.db'}").pool.size() == 5  # SQLAlchemy's default
