"""How a process sees discovered organisations: merged into its settings, re-read after a few seconds or at once
for a connector it does not know, kept while the database cannot say; beat's entries for them and the MSP
table. On SQLite (the merge's queries are the discovery tests', on both databases)."""

from functools import partial

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from config.settings import SettingsCache
from connector.organizations import Organization
from models.tables import MspOrganization
from msp import discovery, views
from worker import runtime
from worker.beat import desired_entries

CONFIG = """
[[connectors]]
name = "hq"
api_key_env = "HQ_KEY"

[[msp]]
name = "acme"
api_key_env = "ACME_MSP_KEY"
discover_interval = "5m"

[msp.connector]
interval = "2h"
"""


@pytest.fixture
def process(tmp_path, monkeypatch):
    """This process's runtime on a fresh SQLite database and the config above."""
    from models.db import make_engine
    from models.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'jumpsync.db'}"
    upgrade(make_engine(url))
    (tmp_path / "jumpsync.toml").write_text(CONFIG)
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(tmp_path / "jumpsync.toml"))
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", url)
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    monkeypatch.setattr(runtime, "_view", runtime._DiscoveredView())
    return runtime._settings.get().file.msp_table("acme")  # the file alone: nothing read or cached yet


@pytest.fixture
def beat_redis(redis_url):
    """A Celery app whose RedBeat entries live in a Redis database of their own, emptied before and after: (app,
    its client, its URL)."""
    import redis
    from celery import Celery

    url = redis_url.rsplit("/", 1)[0] + "/11"
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = Celery("beat-test", broker=url)
    app.conf.update(redbeat_redis_url=url, redbeat_key_prefix="jumpsync:beat:")
    yield app, client, url
    client.flushdb()


def listed(msp, *names: str) -> None:
    organizations = [Organization(f"{i:024x}", name) for i, name in enumerate(names, start=1)]
    discovery.apply_listing(runtime.engine(), msp, organizations, {"hq"})


def test_discovered_organisations_join_the_settings_and_a_new_one_is_read_at_once_for_its_task(process):
    listed(process, "Globex")
    assert [c.name for c in runtime.settings().connectors] == ["hq", "acme-globex"]
    listed(process, "Globex", "Initech")
    assert "acme-initech" not in {c.name for c in runtime.settings().connectors}  # within DISCOVERED_TTL
    fresh = runtime.settings_for("acme-initech")  # a task for it: read again now
    assert fresh.connector("acme-initech").org_id == f"{2:024x}"
    assert fresh.connector("acme-initech").interval == "2h"
    assert runtime.settings() is fresh  # and kept


def test_the_last_known_organisations_stay_while_the_database_cannot_say(process, monkeypatch):
    listed(process, "Globex")
    assert "acme-globex" in {c.name for c in runtime.settings().connectors}

    def down(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(views, "discovered_connectors", down)
    again = runtime.settings_for("acme-unknown")  # forces a read, which fails
    assert [c.name for c in again.connectors] == ["hq", "acme-globex"]


def test_a_config_without_msp_tables_never_reads_the_database(process, tmp_path, monkeypatch):
    (tmp_path / "jumpsync.toml").write_text(CONFIG[:CONFIG.index("[[msp]]")])
    monkeypatch.setattr(views, "discovered_connectors", lambda *_: pytest.fail("read the database"))
    assert [c.name for c in runtime.settings_for("acme-globex").connectors] == ["hq"]


def test_beat_schedules_each_msp_tables_discovery_and_each_discovered_connector(process):
    listed(process, "Globex")
    settings = runtime.settings()
    entries = desired_entries(settings.connectors, settings.file.msp)
    assert entries["msp:acme"]["task"] == "jumpsync.msp.discover"
    assert entries["msp:acme"]["args"] == ("acme",)
    assert entries["msp:acme"]["schedule"].run_every.total_seconds() == 300
    assert entries["sync:acme-globex"]["schedule"].run_every.total_seconds() == 7200
    assert {"sync:hq", "events:hq", "events:acme-globex"} <= set(entries)


def test_up_waits_for_every_msp_listing_then_for_the_discovered_connectors(process):
    from datetime import timedelta

    from cli.up.supervisor import _discovered_names

    settings, engine = runtime._settings.get(), runtime.engine()
    since = discovery.utcnow() - timedelta(seconds=1)
    assert _discovered_names(settings, engine, since) == (None, [])  # not listed yet: nothing to wait for known
    listed(process, "Globex", "Initech")
    assert _discovered_names(settings, engine, since) == (["hq", "acme-globex", "acme-initech"], [])
    assert _discovered_names(settings, engine, discovery.utcnow() + timedelta(seconds=5)) == (None, [])  # too old

    discovery._record_listing(engine, "acme", "failed", error="AuthError: 401 Unauthorized", now=discovery.utcnow())
    names, failed = _discovered_names(settings, engine, since)
    assert failed == ["msp acme: listing failed: AuthError: 401 Unauthorized"]  # up --once exits 1 on it


def test_a_row_no_connector_can_be_made_of_is_left_out_not_fatal(process):
    from sqlmodel import Session

    from models.tables import MspOrganization

    listed(process, "Globex")
    with Session(runtime.engine()) as session:  # as if an older version had stored an id that is no object id
        session.add(MspOrganization(msp="acme", org_id="org-0001-not-an-objecti", connector="acme-odd",
                                    display_name="Odd"))
        session.commit()
    assert [c.name for c in runtime.settings_for("acme-odd").connectors] == ["hq", "acme-globex"]


def test_a_provisioning_request_for_a_just_discovered_organisation_is_applied_not_rejected(process, monkeypatch):
    from provisioning import requests, runner

    listed(process, "Globex")
    stale = runtime.settings()  # the provisioning worker's view, cached
    listed(process, "Globex", "Initech")
    accepted = requests.accept(runtime.engine(), runtime.settings_for("acme-initech"), connector="acme-initech",
                               action="user.suspend", params={"user": "x@example.com"}, requested_by="t",
                               idempotency_key="k1")
    assert runner.execute(runtime.engine(), stale, accepted.request["id"], "t").status == "rejected"  # stale alone
    assert "unknown connector" in requests.get(runtime.engine(), accepted.request["id"])["last_error"]
    again = requests.accept(runtime.engine(), runtime.settings_for("acme-initech"), connector="acme-initech",
                            action="user.suspend", params={"user": "y@example.com"}, requested_by="t",
                            idempotency_key="k2")
    monkeypatch.setattr(runtime, "_view", runtime._DiscoveredView())
    runtime._view.merged = stale  # the same stale view, now with the worker's re-read on an unknown connector
    runtime._view.base, runtime._view.read_at = runtime._settings.get(), float("inf")
    runner.execute(runtime.engine(), stale, again.request["id"], "t", settings_for=runtime.settings_for)
    error = requests.get(runtime.engine(), again.request["id"])["last_error"]
    # resolved to the new organisation's connector: it went as far as reading the MSP key (not set in this test)
    assert error == "connector 'acme-initech': environment variable ACME_MSP_KEY is not set"


def test_a_process_that_never_read_them_keeps_every_schedule_while_the_database_is_down(process, monkeypatch):
    listed(process, "Globex")

    def down(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(views, "discovered_connectors", down)
    fresh = runtime.settings()  # a beat just started: nothing read before
    assert fresh.discovered_known is False and [c.name for c in fresh.connectors] == ["hq"]
    monkeypatch.undo()


def test_beat_keeps_every_discovered_schedule_while_it_cannot_read_them(process, monkeypatch, beat_redis):
    """A beat that starts while the database is down (it never read the discovered connectors) removes no
    schedule; once they are read, a removed organisation's schedule goes."""
    from redbeat.schedulers import RedBeatSchedulerEntry

    from worker.beat import ConnectorScheduler

    app, _client, url = beat_redis

    def entries() -> set[str]:
        return {name for name in ("sync:acme-globex", "sync:acme-initech", "sync:hq")
                if _exists(RedBeatSchedulerEntry, app, name)}

    listed(process, "Globex", "Initech")
    ConnectorScheduler(app=app, lazy=True).reconcile()
    assert entries() == {"sync:acme-globex", "sync:acme-initech", "sync:hq"}

    listed(process, "Globex")  # Initech missing: still running (remove_after)
    real = views.discovered_connectors

    def down(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(views, "discovered_connectors", down)
    monkeypatch.setattr(runtime, "_view", runtime._DiscoveredView())  # a beat just started
    ConnectorScheduler(app=app, lazy=True).reconcile()
    assert entries() == {"sync:acme-globex", "sync:acme-initech", "sync:hq"}  # nothing removed

    monkeypatch.setattr(views, "discovered_connectors", real)
    with Session(runtime.engine()) as session:  # Initech removed
        session.execute(update(MspOrganization).where(MspOrganization.connector == "acme-initech")
                        .values(removed_at=discovery.utcnow()))
        session.commit()
    ConnectorScheduler(app=app, lazy=True).reconcile()
    assert entries() == {"sync:acme-globex", "sync:hq"}


def _exists(entry_class, app, name: str) -> bool:
    try:
        entry_class.from_key(entry_class.generate_key(app, name), app=app)
    except KeyError:
        return False
    return True


def test_beat_reads_every_entry_in_a_fixed_number_of_round_trips(process, beat_redis):
    """Beat compares every entry with Redis each ``config_reload_interval``, and ``status`` reads every connector's
    next sync: with 1,000 organisations behind a key, one round trip an entry was 2,000 a reconcile. The round
    trips of a reconcile that changes nothing, and of the next-sync read, do not grow with the organisations."""

    from tests.support.redis_trips import counted
    from worker.beat import ConnectorScheduler, next_syncs

    app, _client, url = beat_redis

    def round_trips(read) -> int:
        with counted() as trips:
            read()
        return trips.count

    counts = []
    for organisations in (3, 30):
        listed(process, *(f"Org {i}" for i in range(organisations)))
        scheduler = ConnectorScheduler(app=app, lazy=True)
        scheduler.reconcile()  # adds the new entries
        names = [c.name for c in runtime.settings(fresh=True).connectors]
        assert len(names) == organisations + 1
        assert all(next_syncs(app, names).values())  # every connector's entry found
        counts.append((round_trips(scheduler.reconcile), round_trips(partial(next_syncs, app, names))))
    assert counts[0] == counts[1], counts
    assert counts[0][1] == 1, counts


def test_beat_sends_no_second_trigger_while_one_waits_and_keeps_its_place(process, beat_redis):
    """A connector whose trigger still waits (a saturated fleet) gets no second one, and its waiting trigger is not
    dropped at the next interval (no ``expires``): dropping it dropped the same connectors every round. Once the
    trigger's task starts (``release``), beat sends the next."""
    import json

    from redbeat.schedulers import RedBeatSchedulerEntry

    from worker import pending_triggers
    from worker.beat import ConnectorScheduler
    from worker.names import Queue, queue_lists

    app, client, url = beat_redis
    scheduler = ConnectorScheduler(app=app, lazy=True)
    scheduler.reconcile()

    def waiting() -> list[dict]:
        return [json.loads(raw)["headers"] for name in queue_lists(Queue.SYNC) for raw in client.lrange(name, 0, -1)]

    def due() -> RedBeatSchedulerEntry:
        return RedBeatSchedulerEntry.from_key(RedBeatSchedulerEntry.generate_key(app, "sync:hq"), app=app)

    assert scheduler.apply_async(due()) is not None
    first = due().last_run_at
    assert scheduler.apply_async(due()) is None  # the first still waits
    assert due().last_run_at > first  # the entry moved on all the same
    assert [(h["task"], h["argsrepr"], h["expires"]) for h in waiting()] == [("jumpsync.sync.connector", "['hq']",
                                                                               None)]
    assert 3 * 6 * 3600 - 5 <= client.ttl(pending_triggers.key("sync:hq")) <= 3 * 6 * 3600  # 3 of its 6h intervals

    (trigger,) = waiting()
    token = trigger["kwargsrepr"]
    assert "trigger_token" in token
    pending_triggers.release(url, "sync:hq", "another trigger's token")  # a stale trigger leaves a newer mark alone
    assert scheduler.apply_async(due()) is None
    mark = client.get(pending_triggers.key("sync:hq")).decode()
    assert mark in token
    pending_triggers.release(url, "sync:hq", mark)  # its task started
    assert scheduler.apply_async(due()) is not None
    assert len(waiting()) == 2

    # The events refresh likewise: one waits at a time, none expires (a thousand a minute behind a thousand
    # triggers expired unrun).
    refresh = RedBeatSchedulerEntry.from_key(RedBeatSchedulerEntry.generate_key(app, "events:hq"), app=app)
    assert scheduler.apply_async(refresh) is not None
    assert scheduler.apply_async(refresh) is None
    assert [h["expires"] for h in waiting() if h["task"] == "jumpsync.sync.events"] == [None]


def test_a_trigger_beat_could_not_send_takes_its_mark_back(process, beat_redis, monkeypatch):
    """Beat marks the trigger, then the send fails (the broker went away in between): the mark goes with it, or
    the connector would get no scheduled sync until it expired."""
    from celery.beat import Scheduler
    from redbeat.schedulers import RedBeatSchedulerEntry

    from worker import pending_triggers
    from worker.beat import ConnectorScheduler

    app, client, url = beat_redis
    scheduler = ConnectorScheduler(app=app, lazy=True)
    scheduler.reconcile()

    def fails(*_args, **_kwargs):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(Scheduler, "apply_async", fails)
    entry = RedBeatSchedulerEntry.from_key(RedBeatSchedulerEntry.generate_key(app, "sync:hq"), app=app)
    with pytest.raises(ConnectionError):
        scheduler.apply_async(entry)
    assert not client.exists(pending_triggers.key("sync:hq"))
