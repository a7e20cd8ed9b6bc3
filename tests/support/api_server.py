"""``jumpsync api`` as a deployment runs it, for the tests: a real process on a free loopback port, spoken to
over real HTTP, with the database and broker URLs in its environment and no JumpCloud key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.constants import ROOT, TEST_KEY_ENV
from tests.support.databases import fresh_postgres_database
from tests.support.servers import free_port

#: A dry-run connector ``gated`` whose ``group.add-member`` into a group named like ``*admin*`` waits for two
#: approvers: the approval and audit tests' config.
GATED_CONFIG = """\
[[connectors]]
name = "gated"
api_key_env = "GATED_KEY"

[connectors.provisioning]
dry_run = true

[[connectors.provisioning.approval]]
actions = ["group.add-member"]
targets = ["*admin*"]
approvers = 2
"""


class ApiServer:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {name: value for name, value in env.items() if name != TEST_KEY_ENV}
        self.env["PYTHONPATH"] = str(ROOT)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ApiServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", "api", "--port", str(self.port)],
                                         env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jumpsync api exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"jumpsync api did not answer within {timeout}s: {self.log.read_text()}")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def process_env(config: Path, database_url: str, broker_url: str) -> dict[str, str]:
    """The environment of a jumpsync process on this config, database and broker."""
    return {**os.environ, "JUMPSYNC_CONFIG": str(config), "JUMPSYNC_DATABASE_URL": database_url,
            "JUMPSYNC_BROKER_URL": broker_url}


@dataclass
class ServedApi:
    """A running ``jumpsync api`` on a migrated database of its own, and that database's engine."""

    server: ApiServer
    engine: Engine
    env: dict[str, str]
    directory: Path

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, *scopes: str, expires_in: timedelta | None = None) -> tuple[str, str]:
        """A new token with these scopes, as ``jumpsync tokens create`` makes one: (its text, its name)."""
        from auth.tokens import create_token

        name = f"t-{uuid.uuid4().hex[:10]}"
        text, _info = create_token(self.engine, name, list(scopes), expires_in, created_by="tests")
        return text, name

    def client(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token)


@contextmanager
def served_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
               config: str, *, redis_db: int) -> Iterator[ServedApi]:
    """``jumpsync api`` on ``config``, on SQLite or PostgreSQL as ``request.param`` says, its broker database
    ``redis_db`` of the test Redis (what it enqueues is not consumed)."""
    from models.db import make_engine
    from models.migrate import upgrade

    directory = tmp_path_factory.mktemp(f"api-{request.param}")
    url = (f"sqlite:///{directory / 'jumpsync.db'}" if request.param == "sqlite"
           else fresh_postgres_database(request.getfixturevalue("postgres_server_url")))
    engine = make_engine(url)
    upgrade(engine)
    (directory / "jumpsync.toml").write_text(config)
    env = process_env(directory / "jumpsync.toml", url, redis_url.rsplit("/", 1)[0] + f"/{redis_db}")
    server = ApiServer(env, directory / "api.log").start()
    try:
        yield ServedApi(server, engine, env, directory)
    finally:
        server.stop()
        engine.dispose()
