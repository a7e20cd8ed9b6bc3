"""The order a worker takes waiting sync messages in, on a real Redis through kombu: upkeep first, then the work of
runs already open, then what someone asked for, and what the schedule sends last, whatever order they were sent in
(``worker.names.Priority``).
Without it a fleet whose organisations are all due at once opens every run before it finishes one, and the reaper
waits behind thousands of parts."""

from __future__ import annotations

import redis

from worker import runtime
from worker.names import Priority, Queue, TaskName, queue_lists

CONFIG = """
[[connectors]]
name = "hq"
api_key_env = "HQ_KEY"
"""


def _app(tmp_path, monkeypatch, broker_url: str):
    from config.settings import SettingsCache
    from worker.celery_app import create_app

    (tmp_path / "jumpsync.toml").write_text(CONFIG)
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(tmp_path / "jumpsync.toml"))
    monkeypatch.setenv("JUMPSYNC_BROKER_URL", broker_url)
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'jumpsync.db'}")
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    return create_app()


def test_a_worker_takes_upkeep_then_open_runs_then_what_the_schedule_sends(tmp_path, monkeypatch, redis_url):
    broker_url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(broker_url).flushdb()
    app = _app(tmp_path, monkeypatch, broker_url)
    sent = [(TaskName.SYNC_CONNECTOR, ("hq",)), (TaskName.SYNC_EVENTS, ("hq",)), (TaskName.SYNC_PART, (1, "user", "hq")),
            (TaskName.SYNC_CONNECTOR, ("other",)), (TaskName.SYNC_FINALIZE, (1, "hq")), (TaskName.SYNC_REAP, ()),
            (TaskName.MSP_DISCOVER, ("acme",))]
    for task, args in sent:
        app.send_task(task, args=args)

    taken = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(Queue.SYNC, no_ack=True)) is not None:
            taken.append((message.headers["task"], message.headers["argsrepr"]))

    assert taken == [
        (TaskName.SYNC_REAP, "()"), (TaskName.MSP_DISCOVER, "('acme',)"),
        (TaskName.SYNC_PART, "(1, 'user', 'hq')"), (TaskName.SYNC_FINALIZE, "(1, 'hq')"),
        # what the schedule sends, in the order sent: refreshes do not starve the full syncs
        (TaskName.SYNC_CONNECTOR, "('hq',)"), (TaskName.SYNC_EVENTS, "('hq',)"), (TaskName.SYNC_CONNECTOR, "('other',)"),
    ]
    redis.Redis.from_url(broker_url).flushdb()


def test_the_listed_queue_keys_are_the_ones_kombu_fills(tmp_path, monkeypatch, redis_url):
    """``queue_lists`` (what the tests, the bench and operators count) names every list a message lands in."""
    broker_url = redis_url.rsplit("/", 1)[0] + "/12"
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    app = _app(tmp_path, monkeypatch, broker_url)
    for task in (TaskName.SYNC_REAP, TaskName.SYNC_PART, TaskName.ACCESS_REFRESH, TaskName.SYNC_CONNECTOR):
        app.send_task(task, args=())
    filled = {key.decode() for key in client.keys("sync*") if client.type(key) == b"list"}
    assert filled == set(queue_lists(Queue.SYNC))
    assert [client.llen(key) for key in queue_lists(Queue.SYNC)] == [1, 1, 1, 1]
    assert {task.priority for task in TaskName} <= set(Priority)
    client.flushdb()


def test_a_sync_someone_asks_for_goes_before_the_scheduled_ones_waiting(tmp_path, monkeypatch, redis_url):
    """``jumpsync sync NAME`` on a saturated fleet: its trigger is taken before the scheduled triggers already
    waiting (a thousand organisations' worth, behind an MSP key), after the work of the runs already open."""
    import subprocess
    import sys

    from tests.support.constants import ROOT

    broker_url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(broker_url).flushdb()
    app = _app(tmp_path, monkeypatch, broker_url)
    app.send_task(TaskName.SYNC_CONNECTOR, args=("other",), kwargs={"trigger": "schedule"})
    app.send_task(TaskName.SYNC_PART, args=(1, "user", "other"))
    env = {"JUMPSYNC_CONFIG": str(tmp_path / "jumpsync.toml"), "JUMPSYNC_BROKER_URL": broker_url,
           "JUMPSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'jumpsync.db'}", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "cli", "sync", "hq"], env=env, cwd=ROOT, check=True, capture_output=True,
                   timeout=60)

    taken = []
    with app.connection_for_read() as connection:
        while (message := connection.default_channel.basic_get(Queue.SYNC, no_ack=True)) is not None:
            taken.append((message.headers["task"], message.headers["kwargsrepr"]))
    assert taken == [(TaskName.SYNC_PART, "{}"), (TaskName.SYNC_CONNECTOR, "{'trigger': 'manual'}"),
                     (TaskName.SYNC_CONNECTOR, "{'trigger': 'schedule'}")]
    redis.Redis.from_url(broker_url).flushdb()
