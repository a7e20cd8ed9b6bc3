"""The processes of one bench profile: simulator, private Redis, database, and real jumpsync workers.

Everything is started the way a deployment (or the integration tests' WorkerFleet) starts it: the simulator and
each worker are separate processes, the schema comes from ``python -m cli db upgrade``, and tasks are
sent by name through Redis. Every wait has a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from simulator.admin import SimulatorAdmin
from tests.support.servers import PostgresServer, RedisServer, free_port, wait_for_port
from worker.names import TaskName

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "JUMPSYNC_BENCH_API_KEY"
CONNECTOR = "bench"
#: The same org behind a connector with fleet-wide limits (``shared_max_in_flight``, ``rate_limit``), for the
#: budget phase: its syncs run on every sync worker at once and must stay within the limits.
LIMITED_CONNECTOR = "bench-limited"
#: The ``[sync]`` table of every bench config: how often beat re-reads the settings (the default).
SYNC_TABLE = '[sync]\nconfig_reload_interval = "30s"\n'


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPSYNC_METRICS")}  # metrics off
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


# --- the simulator -------------------------------------------------------------------------------------------

class Simulator(SimulatorAdmin):
    """``python -m bench.simproc`` in its own process, driven over HTTP (/_sim and the real write API); with
    ``orgs`` > 1, that many orgs of the profile's spec, multi-tenant (``x-org-id`` on every request)."""

    def __init__(self, directory: Path, profile: str, latency_ms: float, api_key: str, orgs: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.log = directory / "simulator.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", "--profile", profile, "--port", str(self.port),
             "--latency-ms", str(latency_ms), "--orgs", str(orgs)],
            cwd=ROOT, env=python_env({"JUMPSYNC_SIM_API_KEY": api_key}), stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited: see {self.log}")
            try:
                httpx.get(self.url + "/_sim/stats", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the simulator did not answer within {timeout:.0f}s: see {self.log}")

    def stop(self) -> None:
        stop_process(self.proc)


# --- workers -------------------------------------------------------------------------------------------------

@dataclass
class Worker:
    name: str
    queues: str
    concurrency: int
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def children(pid: int) -> list[int]:
    """The pool processes of a Celery worker (``pgrep -P``)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def stop_process(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Fleet:
    """Config file, migrations, sync workers and a provisioning worker for one connector, and beat for the
    incremental refresh phase."""

    def __init__(self, directory: Path, broker_url: str, database_url: str, sim: Simulator, in_flight: int,
                 limits: tuple[int, float] | None = None) -> None:
        from celery import Celery

        self.directory = directory
        self.broker_url = broker_url
        self.database_url = database_url
        self.config_path = directory / "jumpsync.toml"
        self.sim_url = sim.url
        self.in_flight = in_flight
        self.limits = limits
        self.use_config()
        self.env = python_env({"JUMPSYNC_CONFIG": str(self.config_path), "JUMPSYNC_BROKER_URL": broker_url,
                               "JUMPSYNC_DATABASE_URL": database_url, KEY_ENV: sim.api_key})
        self.workers: list[Worker] = []
        self.beat: subprocess.Popen | None = None
        self.client = Celery("jumpsync-bench", broker=broker_url)

    def use_config(self, events_interval: str | None = None) -> None:
        """Write the config file. Without ``events_interval``: ``bench`` with the incremental refresh off (beat
        runs only in the events phase, but the other phases should not depend on that) and, with ``limits``,
        ``bench-limited``. With it: only ``bench``, its refresh every ``events_interval``, for the events phase
        (beat sends a full sync of every connector it finds when it starts, and ``bench-limited``'s would run
        beside the phase). Workers re-read the file before their next task."""
        self.config_path.write_text(self._config(None if events_interval else self.limits, events_interval))

    def _config(self, limits: tuple[int, float] | None, events_interval: str | None) -> str:
        events = f'events = true\nevents_interval = "{events_interval}"\n' if events_interval else "events = false\n"
        config = (SYNC_TABLE + "\n"
                  f'[[connectors]]\nname = "{CONNECTOR}"\nbase_url = "{self.sim_url}"\napi_key_env = "{KEY_ENV}"\n'
                  f'interval = "24h"\nmax_in_flight = {self.in_flight}\n{events}')
        if limits:
            shared_in_flight, rate = limits
            config += (f'\n[[connectors]]\nname = "{LIMITED_CONNECTOR}"\nbase_url = "{self.sim_url}"\n'
                       f'api_key_env = "{KEY_ENV}"\ninterval = "24h"\nmax_in_flight = {self.in_flight}\n'
                       f"shared_max_in_flight = {shared_in_flight}\nrate_limit = {rate:g}\nevents = false\n")
        return config

    def start_beat(self) -> subprocess.Popen:
        """``python -m cli beat`` (RedBeat, this profile's Redis), in the run directory, logging to beat.log."""
        log = self.directory / "beat.log"
        self.beat = subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=self.env, cwd=self.directory,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        return self.beat

    def stop_beat(self) -> None:
        stop_process(self.beat)
        self.beat = None

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "cli", "db", "upgrade"], env=self.env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)

    def start_worker(self, name: str, queues: str, concurrency: int, timeout: float = 90) -> Worker:
        log = self.directory / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h"],
            env=self.env, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, queues, concurrency, proc, log)
        self.workers.append(worker)
        node = f"{name}@{os.uname().nodename}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited: see {log}")
            if self.client.control.ping(destination=[node], timeout=1.0):
                return worker
        raise RuntimeError(f"worker {name} did not answer a ping within {timeout:.0f}s: see {log}")

    def send(self, task: TaskName, *args, **kwargs):
        return self.client.send_task(task, args=list(args), kwargs=kwargs, queue=task.queue)

    def stop(self) -> None:
        self.stop_beat()
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)  # its own session: the worker and its pool
                worker.proc.wait(timeout=10)


# --- memory and CPU ------------------------------------------------------------------------------------------

def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds_with_ended(pid: int) -> float:
    """CPU seconds of a process, its live children, and its children that have ended and were waited for
    (cutime + cstime): PostgreSQL's backends of connections closed meanwhile, for instance."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ended = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        ended = 0.0
    return tree_cpu_seconds(pid) + ended


def cpu_by_component(components: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named group of process trees, with their ended children: read before and
    after a phase, the difference says where its CPU went."""
    return {name: sum(map(tree_cpu_seconds_with_ended, pids)) for name, pids in components.items()}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from the first line of /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children."""
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *children(pid)])


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``), so a peak belongs to one sync."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@dataclass
class ProcSample:
    peak_kb: int = 0      # max VmHWM seen
    rss: list = field(default_factory=list)  # (unix time, VmRSS kB) every interval
    cpu_start: float | None = None
    cpu_end: float | None = None


@dataclass
class Sampler:
    """Samples VmHWM (peak RSS) of every worker's main process and its pool children, and CPU time of the
    workers and the simulator, every ``interval`` seconds while a sync runs."""

    fleet: Fleet
    sim: Simulator
    extra: dict[str, int] = field(default_factory=dict)  # more process trees to account for: name -> pid
    interval: float = 0.5
    procs: dict[int, ProcSample] = field(default_factory=dict)
    roles: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> (worker name, "main" | "pool")
    peak_reset: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _children_of(self, pid: int) -> list[int]:
        """Pool processes, looked up again every few seconds (forking pgrep 4 times a second would be load)."""
        cache = getattr(self, "_children", {})
        when, found = cache.get(pid, (0.0, []))
        if time.monotonic() - when > 5.0:
            found = children(pid)
            cache[pid] = (time.monotonic(), found)
            self._children = cache
        return found

    def _pids(self) -> list[int]:
        pids = []
        for worker in self.fleet.workers:
            if worker.proc.poll() is not None:
                continue
            self.roles.setdefault(worker.pid, (worker.name, "main"))
            pids.append(worker.pid)
            for child in self._children_of(worker.pid):
                self.roles.setdefault(child, (worker.name, "pool"))
                pids.append(child)
        return pids

    def _sample(self) -> None:
        for pid in self._pids():
            sample = self.procs.setdefault(pid, ProcSample(cpu_start=cpu_seconds(pid)))
            hwm = _status_kb(pid, "VmHWM")
            if hwm:
                sample.peak_kb = max(sample.peak_kb, hwm)
            rss = _status_kb(pid, "VmRSS")
            if rss:
                sample.rss.append((time.time(), rss))
            sample.cpu_end = cpu_seconds(pid) or sample.cpu_end

    def start(self) -> Sampler:
        for pid in self._pids():
            self.peak_reset = reset_peak(pid) and self.peak_reset
        self.sim_cpu_start = cpu_seconds(self.sim.proc.pid)
        self.extra_start = {name: tree_cpu_seconds(pid) for name, pid in self.extra.items()}
        self.own_start = sum(os.times()[:2])
        self.busy_start = machine_busy_seconds()
        self.load_start = os.getloadavg()[0]
        self._children: dict[int, tuple[float, list[int]]] = {}
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def rss_between(self, start: float, end: float, queues: str = "sync") -> float:
        """The largest sampled VmRSS (MB) of a pool process of the given workers between two instants."""
        names = {w.name for w in self.fleet.workers if w.queues == queues}
        peak = 0
        for pid, sample in self.procs.items():
            name, role = self.roles[pid]
            if role == "pool" and name in names:
                peak = max([peak] + [kb for t, kb in sample.rss if start <= t <= end])
        return round(peak / 1024, 1)

    def stop(self) -> dict:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._children = {}
        self._sample()
        sim_cpu_end = cpu_seconds(self.sim.proc.pid)
        busy = machine_busy_seconds() - self.busy_start
        own = sum(os.times()[:2]) - self.own_start
        extra = {name: round(tree_cpu_seconds(pid) - self.extra_start[name], 2) for name, pid in self.extra.items()}
        per_worker: dict[str, dict] = {}
        for pid, sample in self.procs.items():
            name, role = self.roles[pid]
            entry = per_worker.setdefault(name, {"main_peak_rss_mb": 0.0, "pool_peak_rss_mb": 0.0, "cpu_s": 0.0,
                                                 "pool_pids": [], "busiest_pool_cpu_s": 0.0})
            mb = round(sample.peak_kb / 1024, 1)
            if role == "main":
                entry["main_peak_rss_mb"] = mb
            else:
                entry["pool_peak_rss_mb"] = max(entry["pool_peak_rss_mb"], mb)
                entry["pool_pids"].append(pid)
            if sample.cpu_start is not None and sample.cpu_end is not None:
                used = sample.cpu_end - sample.cpu_start
                entry["cpu_s"] = round(entry["cpu_s"] + used, 2)
                if role == "pool":
                    entry["busiest_pool_cpu_s"] = round(max(entry["busiest_pool_cpu_s"], used), 2)
        sim_cpu = (round(sim_cpu_end - self.sim_cpu_start, 2)
                   if sim_cpu_end is not None and self.sim_cpu_start is not None else None)
        ours = sum(w["cpu_s"] for w in per_worker.values()) + (sim_cpu or 0.0) + own + sum(extra.values())
        return {
            "workers": per_worker,
            "peak_reset_per_sync": self.peak_reset,
            "simulator_cpu_s": sim_cpu,
            "harness_cpu_s": round(own, 2),
            "servers_cpu_s": extra,
            "machine_busy_cpu_s": round(busy, 2),
            # CPU the machine spent on anything else (other users, kernel work not charged to our processes,
            # database backends that exited): a large value means the figures were taken on a busy machine.
            "other_cpu_s": round(max(0.0, busy - ours), 2),
            "loadavg_1m_at_start": round(self.load_start, 2),
        }


# --- servers -------------------------------------------------------------------------------------------------

def start_redis(directory: Path) -> RedisServer:
    return RedisServer(directory / "redis").start()


def adopt_new_broker(url: str) -> None:
    """Tell the reaper this Redis is new, not one that lost its data (``worker.broker_epoch``): else its first run
    sends again the parts the runs then open wait for (harmless, documented there), and the simulator counts
    requests no run recorded. ``jumpsync up`` needs no such step: it fails every run an earlier ``up`` left."""
    import redis as redis_py

    from worker.broker_epoch import EPOCH_KEY

    client = redis_py.Redis.from_url(url)
    try:
        client.set(EPOCH_KEY, "new", nx=True)
    finally:
        client.close()


def start_postgres() -> tuple[PostgresServer, Path]:
    """A private cluster in a fresh temporary directory (chowned to ``postgres`` when run as root, so its
    parent must not be a private directory of root's)."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="jumpsync-bench-pg-"))
    return PostgresServer(directory).start(), directory


def new_postgres_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_pid(server: PostgresServer) -> int:
    return int((server.directory / "data" / "postmaster.pid").read_text().split()[0])


# --- everything a profile runs on ----------------------------------------------------------------------------

@dataclass
class Stack:
    """The running processes of one profile (or the MSP phase): what ``started`` yields."""

    sim: Simulator
    redis: RedisServer
    fleet: Fleet
    engine: object  # sqlalchemy Engine on the fleet's database
    database_url: str
    #: Process trees whose CPU a figure accounts for beside the workers and the simulator: name -> pid.
    servers: dict[str, int]


#: Builds the fleet once the simulator, Redis and the database are up: (broker URL, database URL, simulator).
FleetFactory = Callable[[str, str, Simulator], Fleet]


@contextmanager
def started(directory: Path, *, profile: str, latency_ms: float, api_key: str, pg: PostgresServer | None,
            make_fleet: FleetFactory, sync_workers: int, sync_concurrency: int, orgs: int = 1,
            provisioning: bool = True, provisioning_workers: int = 2, provisioning_threads: int = 16,
            keep: bool = False) -> Iterator[Stack]:
    """Start the simulator (``orgs`` orgs of ``profile``), a private Redis, a fresh migrated database (a new
    PostgreSQL database ``bench_<profile>`` on ``pg``, else an SQLite file in ``directory``), ``sync_workers``
    sync workers and, with ``provisioning``, ``provisioning_workers`` provisioning workers (processes, on
    threads: ``provisioning_threads`` requests in flight each); stop them all afterwards, whatever happened, and
    remove the SQLite files unless ``keep``."""
    from models.db import make_engine

    sim = redis = fleet = engine = None
    try:
        sim = Simulator(directory, profile, latency_ms, api_key, orgs=orgs)
        redis = start_redis(directory)
        adopt_new_broker(redis.url)
        sim.wait_ready(timeout=600)
        database_url = (new_postgres_database(pg.url, f"bench_{profile}") if pg is not None
                        else f"sqlite:///{directory / 'jumpsync.db'}")
        servers = {"redis": redis.proc.pid}
        if pg is not None:
            servers["postgres"] = postgres_pid(pg)
        fleet = make_fleet(redis.url, database_url, sim)
        fleet.migrate()
        for i in range(sync_workers):
            fleet.start_worker(f"sync{i + 1}", "sync", sync_concurrency)
        if provisioning:
            for i in range(provisioning_workers):
                fleet.start_worker(f"prov{i + 1}", "provisioning", provisioning_threads)
        engine = make_engine(database_url)
        yield Stack(sim, redis, fleet, engine, database_url, servers)
    finally:
        if engine is not None:
            engine.dispose()
        if fleet is not None:
            fleet.stop()
        if sim is not None:
            sim.stop()
        if redis is not None:
            redis.stop()
        if not keep:
            for db_file in directory.glob("*.db*"):
                db_file.unlink(missing_ok=True)


__all__ = ["CONNECTOR", "LIMITED_CONNECTOR", "SYNC_TABLE", "Fleet", "Sampler", "Simulator", "Stack",
           "drop_postgres_database", "free_port", "new_postgres_database", "postgres_pid", "start_postgres",
           "start_redis", "started", "stop_process", "wait_for_port"]
