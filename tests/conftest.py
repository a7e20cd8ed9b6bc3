"""Shared fixtures: real Redis and PostgreSQL servers, databases, simulators and a real Celery worker."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.constants import TEST_API_KEY
from tests.support.databases import fresh_postgres_database
from tests.support.fleet import WorkerFleet
from tests.support.servers import PostgresServer, RedisServer

# Hypothesis's per-example deadline is a wall-clock limit: on a machine busy with other tests it fails properties
# that hold. Properties are checked here; speed is measured by `make bench`.
settings.register_profile("jumpsync", deadline=None)
settings.load_profile("jumpsync")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules marked ``long`` first, each in its own order: pytest-xdist hands out whole files in collection
    order, and a long file handed out last runs alone at the end while the other processes wait."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(scope="session")
def redis_url():
    if os.environ.get("JUMPSYNC_TEST_REDIS_URL"):
        yield os.environ["JUMPSYNC_TEST_REDIS_URL"]
        return
    directory = Path(tempfile.mkdtemp(prefix="jumpsync-redis-"))
    server = RedisServer(directory).start()
    yield server.url
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url():
    if os.environ.get("JUMPSYNC_TEST_POSTGRES_URL"):
        yield os.environ["JUMPSYNC_TEST_POSTGRES_URL"]
        return
    directory = Path(tempfile.mkdtemp(prefix="jumpsync-pg-"))
    server = PostgresServer(directory).start()
    yield server.url
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Each test that takes this runs twice: on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jumpsync.db'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def engine(db_url):
    from models.db import make_engine
    from models.migrate import upgrade

    db = make_engine(db_url)
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def run(engine, tmp_path, monkeypatch):
    """``run(*args)`` invokes ``jumpsync`` in-process on the test's database (connector ``acme`` configured),
    whose tables are tab-separated (its stdout is no terminal)."""
    from typer.testing import CliRunner

    from cli import main as cli
    from config.settings import SettingsCache
    from models.db import get_engine
    from worker import runtime

    url = engine.url.render_as_string(hide_password=False)
    config = tmp_path / "jumpsync.toml"
    config.write_text('[[connectors]]\nname = "acme"\napi_key_env = "ACME_KEY"\n')
    monkeypatch.setenv("JUMPSYNC_CONFIG", str(config))
    monkeypatch.setenv("JUMPSYNC_DATABASE_URL", url)
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli.app, list(args))
    get_engine(url).dispose()


@pytest.fixture
def terminal(monkeypatch):
    """``terminal(columns)``: the CLI then prints as at a terminal of that width (tables, not TSV; no colour)."""
    def at(columns: int) -> None:
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        monkeypatch.setenv("NO_COLOR", "1")
        monkeypatch.setenv("COLUMNS", str(columns))
    return at


@pytest.fixture
def simulator():
    """Start simulators for a test: ``simulator(spec)`` returns a running ``SimulatorHandle``."""
    from tests.support.simulators import SimulatorHandle

    started: list[SimulatorHandle] = []

    def start(spec=None, **kwargs) -> SimulatorHandle:
        handle = SimulatorHandle.start(spec, api_key=TEST_API_KEY, **kwargs)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="session")
def fleet(redis_url, tmp_path_factory):
    """Real workers for the integration tests, one per queue as deployed (SQLite database, real Redis broker)."""
    directory = tmp_path_factory.mktemp("fleet")
    fleet = WorkerFleet(directory, redis_url, f"sqlite:///{directory / 'jumpsync.db'}")
    fleet.migrate()
    fleet.start_worker("w1", queues="sync")
    fleet.start_worker("p1", queues="provisioning", concurrency=None)  # as deployed: threads
    yield fleet
    fleet.stop()


@pytest.fixture
def fleet_engine(fleet):
    """An engine on the fleet's database, schema in place (what a deployment's ``db upgrade`` step does)."""
    from models.db import make_engine
    from models.migrate import upgrade

    engine = make_engine(fleet.database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def up(tmp_path):
    """``up(folder=None, terminal=False)`` starts ``jumpsync up`` in a folder (the test's own by default) and
    stops every one started when the test ends."""
    from tests.support.up_process import Up

    started: list[Up] = []

    def start(folder: Path | None = None, **kwargs):
        handle = Up(folder or tmp_path, **kwargs)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
