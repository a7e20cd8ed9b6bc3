"""The fleet the chaos scenarios break: private PostgreSQL and Redis servers, the simulator, two sync workers,
one provisioning worker and beat, every process under a restart loop (``supervised``).

Settings are a deployment's defaults, so that the times measured are the ones an operator gets, except the
provisioning lease (1 minute instead of 15: a request whose worker died is taken over after the lease, and the
scenario that kills the provisioning worker would otherwise wait 15 minutes to show it) and the key's rate limit.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import Engine

from models import queries
from models.db import make_engine
from models.migrate import upgrade
from models.states import PartStatus, RunStatus
from simulator.generator import TenantSpec
from tests.chaos.supervised import Supervised
from tests.support.constants import ROOT, TEST_API_KEY, TEST_KEY_ENV
from tests.support.e2e import ALL_ACTIONS_POLICY, state
from tests.support.fleet import WorkerFleet
from tests.support.servers import PostgresServer, RedisServer
from tests.support.simulators import SimulatorHandle

#: The issue's tenant: a full sync is some 335 requests.
SPEC = TenantSpec(seed=27, users=5000, admins=20, groups=200, apps=40)
LATENCY_MS = 20
#: The key's budget, requests a second for syncs and provisioning together (as the benchmarks' MSP phase): a
#: full sync then lasts some 20 s, as long as a real one of this tenant takes, so that a fault lands while its
#: parts run (at 20 ms and no limit it would take 2 s).
RATE_LIMIT = 20
CONNECTOR = "chaos"
#: Sync worker processes: two workers of one process each, so that a run's four fetch parts do not all run at
#: once and some wait in the queue (the Redis wipe scenario needs queued parts).
SYNC_WORKERS = ("s1", "s2")
SYNC_CONCURRENCY = 1
PROVISIONING_WORKER = "p1"
LEASE = "1m"


class ChaosFleet(WorkerFleet):
    """``WorkerFleet`` with a deployment's settings (the test fleet's are shortened) and processes started by a
    restart loop rather than waited for."""

    def write_config(self) -> None:
        text = f'[provisioning]\nlease = "{LEASE}"\n\n' + "".join(self.connectors.values())
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def add_chaos_connector(self, name: str, base_url: str) -> None:
        self.connectors[name] = (f'[[connectors]]\nname = "{name}"\nbase_url = "{base_url}"\n'
                                 f'api_key_env = "{TEST_KEY_ENV}"\ninterval = "1h"\nrate_limit = {RATE_LIMIT}\n'
                                 f'{ALL_ACTIONS_POLICY}\n')
        self.write_config()

    def spawn(self, name: str, *argv: str) -> subprocess.Popen:
        """``jumpsync ARGV`` in a session of its own, its output appended to ``NAME.log``."""
        with open(self.directory / f"{name}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "cli", *argv], env=self.env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_worker(self, name: str, timeout: float = 90) -> None:
        """Until the worker answers a ping; this process's own broker connection may be one a scenario cut."""
        deadline = time.monotonic() + timeout
        while not self._pinged(name):
            assert time.monotonic() < deadline, f"worker {name} did not answer within {timeout}s: {name}.log"

    def _pinged(self, name: str) -> bool:
        try:
            return bool(self.client.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=1.0))
        except (redis.exceptions.ConnectionError, BrokerError):
            time.sleep(0.5)
            return False


@dataclass
class Stack:
    directory: Path
    pg_directory: Path
    postgres: PostgresServer
    broker: RedisServer
    sim: SimulatorHandle
    fleet: ChaosFleet
    engine: Engine
    processes: dict[str, Supervised] = field(default_factory=dict)
    used_users: set[str] = field(default_factory=set)  # users a change of the suite touched (chaos.load)

    @property
    def connector(self) -> str:
        return CONNECTOR

    # --- the servers ---------------------------------------------------------------------------------------
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker.url, socket_timeout=5)

    def restart_redis(self, down: float) -> None:
        """SIGTERM (Redis writes its append-only file), ``down`` seconds, then the same server again."""
        self.broker.stop()
        time.sleep(down)
        self.broker = RedisServer(self.broker.directory, port=self.broker.port).start()

    def stop_postgres(self) -> None:
        self.engine.dispose()
        self.postgres.stop()

    def resume_postgres(self) -> None:
        self.postgres.resume()

    # --- syncs ---------------------------------------------------------------------------------------------
    def trigger_sync(self) -> str:
        return self.fleet.send("jumpsync.sync.connector", self.connector, trigger="manual").id

    def run(self, task_id: str):
        return queries.run_by_task_id(self.engine, task_id)

    def running_parts(self, task_id: str) -> list[str]:
        run = self.run(task_id)
        return [p.name for p in run.parts if p.status == PartStatus.RUNNING] if run else []

    def state(self):
        return state(self.engine, self.connector)

    def worker_on_part(self, task_id: str, parts: tuple[str, ...]) -> tuple[str, str] | None:
        """(process, part): a sync worker running one of ``parts`` of the run of ``task_id`` now, as Celery's
        ``inspect active`` shows it."""
        run = self.run(task_id)
        if run is None:
            return None
        for node, tasks in (self.fleet.client.control.inspect(timeout=2).active() or {}).items():
            for task in tasks:
                args = task.get("args")
                args = list(args) if isinstance(args, (list, tuple)) else ast.literal_eval(str(args))
                if task["name"] == "jumpsync.sync.part" and args[0] == run.id and args[1] in parts:
                    return node.split("@")[0], args[1]
        return None

    def sync_and_wait(self, timeout: float = 240):
        """A manual sync, once the connector is free; the run when it ended."""
        deadline = time.monotonic() + timeout
        while True:
            run = queries.wait_for_run(self.engine, self.trigger_sync(), max(1.0, deadline - time.monotonic()))
            assert run is not None, "the sync did not end in time"
            if run.status != RunStatus.SKIPPED:
                return run
            assert time.monotonic() < deadline, "the connector stayed busy"
            time.sleep(2)  # another run (beat's) holds the connector: try again when it is done

    # --- processes -----------------------------------------------------------------------------------------
    def supervise(self, name: str, *argv: str) -> Supervised:
        self.processes[name] = Supervised(name, lambda: self.fleet.spawn(name, *argv)).start()
        return self.processes[name]

    def unexpected_exits(self, since: float, killed: tuple[str, ...] = ()) -> dict[str, int]:
        """Exits of each process since ``since`` beyond the one kill a scenario made of it."""
        found = {name: len(p.exits_since(since)) - (1 if name in killed else 0)
                 for name, p in self.processes.items()}
        return {name: n for name, n in found.items() if n > 0}

    def stop(self) -> None:
        stopping = [threading.Thread(target=p.stop) for p in self.processes.values()]  # warm shutdowns at once
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(timeout=90)
        self.engine.dispose()
        self.sim.stop()
        self.broker.stop()
        self.postgres.stop()
        shutil.rmtree(self.pg_directory, ignore_errors=True)


def start_stack(directory: Path, started: list[Stack]) -> Stack:
    """Servers, simulator, workers, a first full sync, then beat (which finds that sync and waits its
    interval). ``started`` gets the stack as soon as it exists, so that a failure halfway is cleaned up."""
    pg_directory = Path(tempfile.mkdtemp(prefix="jumpsync-pg-"))  # the postgres user must reach it
    postgres = PostgresServer(pg_directory)
    broker = RedisServer(directory / "redis")
    sim = SimulatorHandle.start(SPEC, api_key=TEST_API_KEY)
    sim.set_latency(LATENCY_MS)
    fleet = ChaosFleet(directory, broker.url, postgres.url)
    stack = Stack(directory, pg_directory, postgres, broker, sim, fleet, make_engine(postgres.url))
    started.append(stack)
    postgres.start()
    broker.start()
    fleet.add_chaos_connector(CONNECTOR, sim.url)
    fleet.migrate()
    upgrade(stack.engine)
    for name in SYNC_WORKERS:
        stack.supervise(name, "worker", "-Q", "sync", "-c", str(SYNC_CONCURRENCY), "-n", f"{name}@%h")
    stack.supervise(PROVISIONING_WORKER, "worker", "-Q", "provisioning", "-n", f"{PROVISIONING_WORKER}@%h")
    for name in (*SYNC_WORKERS, PROVISIONING_WORKER):
        fleet.wait_for_worker(name)
    first = stack.sync_and_wait()
    assert first.status == RunStatus.SUCCEEDED, first
    stack.supervise("beat", "beat")
    return stack
