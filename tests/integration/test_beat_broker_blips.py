"""A real ``jumpsync beat`` through its broker's restarts and a wipe (issue 27, fault 4): it keeps running, takes its
lock again, and a schedule missing from Redis is rebuilt from the database's last runs instead of firing every
connector at once. Nothing consumes the queue here: each trigger beat sends is a message in the ``sync`` list."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update
from sqlmodel import Session

from config.settings import load_settings
from models.db import make_engine
from models.migrate import upgrade
from models.states import RunStatus, Trigger
from models.tables import SyncRun, utcnow
from pipeline import sync
from tests.support.constants import ROOT, TEST_API_KEY, TEST_KEY_ENV
from tests.support.servers import RedisServer, free_port
from worker.names import Queue, queue_lists

pytestmark = [pytest.mark.integration, pytest.mark.long]


def _config(tmp_path, names: list[str]) -> str:
    text = '[sync]\nconfig_reload_interval = "10s"\n\n'
    for name in names:
        text += (f'[[connectors]]\nname = "{name}"\nbase_url = "http://127.0.0.1:9"\napi_key_env = "{TEST_KEY_ENV}"\n'
                 f'interval = "1h"\nevents = false\n\n')
    path = tmp_path / "jumpsync.toml"
    path.write_text(text)
    return str(path)


def _ran(engine, settings, name: str, ago: timedelta) -> None:
    """A finished full sync of ``name`` that started ``ago``."""
    started = sync.begin(settings, engine, name, trigger=Trigger.SCHEDULE)
    with Session(engine) as session:
        session.execute(update(SyncRun).where(SyncRun.id == started.run_id).values(
            status=RunStatus.SUCCEEDED, started_at=utcnow() - ago, finished_at=utcnow() - ago + timedelta(seconds=5)))
        session.commit()


def queued(client: redis.Redis) -> list[dict]:
    """The headers of the messages waiting in the sync queue, every priority step."""
    return [json.loads(raw)["headers"] for key in queue_lists(Queue.SYNC) for raw in client.lrange(key, 0, -1)]


def queued_tasks(client: redis.Redis) -> set[str]:
    return {headers["task"] for headers in queued(client)}


def triggered(client: redis.Redis) -> list[str]:
    """The connectors named by the sync triggers waiting in the queue (beat's other entries left out)."""
    return sorted(h["argsrepr"].strip("[](),' ") for h in queued(client) if h["task"] == "jumpsync.sync.connector")


def _beat_of_two_connectors(tmp_path, monkeypatch, broker_url: str):
    """``jumpsync beat`` of two connectors, "recent" (synced 10 minutes ago) and "due" (2 hours ago): its
    process, its log, the engine of its database."""
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)
    config = _config(tmp_path, ["recent", "due"])
    database = f"sqlite:///{tmp_path / 'jumpsync.db'}"
    engine = make_engine(database)
    upgrade(engine)
    settings = load_settings(config)
    _ran(engine, settings, "recent", timedelta(minutes=10))  # next due in 50 minutes
    _ran(engine, settings, "due", timedelta(hours=2))        # overdue
    env = {"JUMPSYNC_CONFIG": config, "JUMPSYNC_BROKER_URL": broker_url, "JUMPSYNC_DATABASE_URL": database,
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    log = tmp_path / "beat.log"
    beat = subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=env, cwd=ROOT, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    return beat, log, engine


def test_beat_rides_out_broker_restarts_and_rebuilds_a_wiped_schedule_from_the_database(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "redis", port=free_port()).start()
    client = redis.Redis.from_url(server.url)
    beat, log, engine = _beat_of_two_connectors(tmp_path, monkeypatch, server.url)
    try:
        wait_for(lambda: triggered(client) == ["due"], log, beat, "beat sent the overdue sync only")
        time.sleep(3)
        assert triggered(client) == ["due"], log.read_text()  # the recent one waits for its hour

        server.stop()  # a broker restart: beat's ticks meet a refused connection meanwhile
        time.sleep(4)
        server = RedisServer(tmp_path / "redis", port=server.port).start()
        wait_for(lambda: client.exists("jumpsync:beat:sync:recent"), log, beat, "beat's schedule after the restart")
        time.sleep(4)
        assert beat.poll() is None, log.read_text()
        assert "does not answer" in log.read_text()
        assert "recent" not in triggered(client), log.read_text()

        client.flushall()  # a broker restarted without its data: the schedule and beat's lock are gone
        wait_for(lambda: client.exists("jumpsync:beat:sync:recent"), log, beat, "beat rebuilt its schedule")
        # The fixed entries went too: the reaper (and the relay) must run again, not wait for beat's restart.
        wait_for(lambda: "jumpsync.sync.reap" in queued_tasks(client), log, beat, "the reaper sent after the wipe",
                 timeout=20)  # its entry stored again within a tick or two, due at once
        wait_for(lambda: triggered(client) == ["due"], log, beat, "the overdue sync sent again")
        time.sleep(4)
        assert beat.poll() is None, log.read_text()
        assert triggered(client) == ["due"], log.read_text()  # the recent one still waits for its hour
        assert "taking it again" in log.read_text()
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        server.stop()
        engine.dispose()


def wait_for(condition, log, beat, what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert beat.poll() is None, f"beat exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s\n{log.read_text()}"
        time.sleep(0.2)


def test_beat_started_while_its_broker_is_down_waits_for_it(tmp_path, monkeypatch):
    """Beat (re)started during the broker's restart, as a service manager does: it keeps running and sets its
    schedule up once Redis answers (the chaos suite saw it exit twice in a row at start)."""
    server = RedisServer(tmp_path / "redis", port=free_port())
    beat, log, engine = _beat_of_two_connectors(tmp_path, monkeypatch, server.url)
    try:
        wait_for(lambda: "does not answer at start" in log.read_text(), log, beat, "beat noticed the broker gone")
        time.sleep(2)
        assert beat.poll() is None, log.read_text()
        server.start()
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: triggered(client) == ["due"], log, beat, "beat's schedule once the broker answers")
        assert client.exists("jumpsync:beat:sync:recent")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        server.stop()
        engine.dispose()
