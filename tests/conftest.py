"""Shared fixtures: real Redis and PostgreSQL servers, databases, simulators and a real Celery worker."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer, free_port  # noqa: F401  (re-exported)

ROOT = Path(__file__).resolve().parent.parent
TEST_API_KEY = "test-key-0123456789abcdef"
TEST_KEY_ENV = "JUMPSYNC_TEST_API_KEY"


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


_db_counter = itertools.count()


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the test server, so every test starts clean."""
    import psycopg

    name = f"jumpsync_t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


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
    from tests.simhelpers import SimulatorHandle

    started: list[SimulatorHandle] = []

    def start(spec=None, **kwargs) -> SimulatorHandle:
        handle = SimulatorHandle.start(spec, api_key=TEST_API_KEY, **kwargs)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


class WorkerFleet:
    """A real ``celery worker`` process with its config file, database and broker."""

    def __init__(self, directory: Path, broker_url: str, database_url: str) -> None:
        self.directory = directory
        self.broker_url = broker_url
        self.database_url = database_url
        self.config_path = directory / "jumpsync.toml"
        self.connectors: dict[str, str] = {}
        self.procs: list[subprocess.Popen] = []
        self.extra_env: dict[str, str] = {}
        self.sync_settings: dict[str, str] = {}  # more [sync] keys, e.g. short limits for redelivery tests
        self.write_config()
        from celery import Celery

        self.client = Celery("jumpsync-tests", broker=broker_url)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"JUMPSYNC_CONFIG": str(self.config_path), "JUMPSYNC_BROKER_URL": self.broker_url,
                    "JUMPSYNC_DATABASE_URL": self.database_url, TEST_KEY_ENV: TEST_API_KEY,
                    "PYTHONPATH": str(ROOT)})
        env.update(self.extra_env)
        return env

    def write_config(self) -> None:
        """Write the config atomically (a new inode), as an operator's editor or deploy tool would."""
        sync = "".join(f'{key} = "{value}"\n'
                       for key, value in {"config_reload_interval": "10s", **self.sync_settings}.items())
        text = ('[sync]\n' + sync
                + '\n[provisioning]\nrelay_after = "10s"\nlease = "10m"\n\n' + "".join(self.connectors.values()))
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def add_connector(self, name: str, base_url: str, extra: str = "") -> None:
        self.connectors[name] = (f'[[connectors]]\nname = "{name}"\nbase_url = "{base_url}"\n'
                                 f'api_key_env = "{TEST_KEY_ENV}"\nmax_attempts = 3\nbackoff_base = 0.05\n'
                                 f'interval = "1h"\n{extra}\n')
        self.write_config()

    def migrate(self) -> None:
        """``jumpsync db upgrade``, as a deployment runs it before starting workers."""
        subprocess.run([sys.executable, "-m", "cli", "db", "upgrade"], env=self.env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)

    def start_worker(self, name: str = "w1", concurrency: int = 4, queues: str = "sync,provisioning") -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h"],
            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: a test can kill the worker and its pool at once
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = self.client.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=1.0)
            if replies:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: see {self.directory / (name + '.log')}")
        raise RuntimeError("worker did not answer a ping within 60s")

    def send(self, task: str, *args, queue: str = "sync", **kwargs):
        """Send a task by name to its queue, as a client that does not import jumpsync would."""
        return self.client.send_task(task, args=list(args), kwargs=kwargs, queue=queue)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def fleet(redis_url, tmp_path_factory):
    """Real workers for the integration tests, one per queue as deployed (SQLite database, real Redis broker)."""
    directory = tmp_path_factory.mktemp("fleet")
    fleet = WorkerFleet(directory, redis_url, f"sqlite:///{directory / 'jumpsync.db'}")
    fleet.migrate()
    fleet.start_worker("w1", queues="sync")
    fleet.start_worker("p1", queues="provisioning", concurrency=2)
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
