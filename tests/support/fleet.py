"""A real ``celery worker`` fleet for the end-to-end tests: its config file, database and broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.constants import ROOT, TEST_API_KEY, TEST_KEY_ENV


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
                + '\n[provisioning]\nrelay_after = "10s"\nlease = "10m"\n'
                + '\n[access]\nrender_interval = "10s"\n\n' + "".join(self.connectors.values()))
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

    def start_worker(self, name: str = "w1", concurrency: int | None = 4,
                     queues: str = "sync,provisioning") -> subprocess.Popen:
        """``jumpsync worker``; ``concurrency`` None: the command's default for the queues (16 threads for
        provisioning alone)."""
        log = open(self.directory / f"{name}.log", "ab")
        size = [] if concurrency is None else ["-c", str(concurrency)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "-Q", queues, *size, "-n", f"{name}@%h"],
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
