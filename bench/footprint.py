"""The footprint phase: ``jumpsync up`` run as a person runs it, and the memory of each kind of process it starts.

Memory is PSS (``/proc/PID/smaps_rollup``): a page shared by several processes counts for each a share of it, so
the figures of a worker's pool processes and of the fleet add up to what the machine gives them. Each process is
sampled every second from ``up``'s start; a kind's figure is the sum over its processes (the sync worker's pool
processes are their own kind). *Idle* is a sample once the syncs are over and the processes have settled, *peak*
the largest sample during the first sync, a second full sync and the renderings after them.

Tenants: ``demo`` is ``up`` with nothing configured (its embedded simulator, which is counted apart: a
deployment has none); a bench profile (``large``) is ``up`` with one connector on the bench simulator of that
profile.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bench.fleet import KEY_ENV, Simulator
from tests.support.servers import free_port
from tests.support.up_process import clean_env

#: The connector of a bench profile's config; ``up`` names the org of its embedded simulator ``demo``.
CONNECTOR = "bench"
DEMO = "demo"
#: Seconds after the second sync before the idle sample: its renderings end, the pool processes trim what they
#: freed.
SETTLE_S = 15.0
SAMPLE_EVERY_S = 1.0


class Kind(StrEnum):
    """A process of ``up``, by what it runs."""

    SUPERVISOR = "up (supervisor)"
    WATCHDOG = "watchdog"
    REDIS = "Redis"
    SYNC_MAIN = "sync worker"
    SYNC_POOL = "sync pool processes"
    PROVISIONING = "provisioning worker"
    BEAT = "beat"
    FLOWER = "Flower"
    API = "API"
    SIMULATOR = "simulator (demo only)"
    OTHER = "other"


#: Kinds that are not the deployment's: left out of the fleet's total.
NOT_DEPLOYED = {Kind.SIMULATOR}


def kind_of(cmdline: str, parent: Kind | None) -> Kind:
    """The kind of a process under ``up`` from its command line and its parent's kind."""
    if parent is Kind.SYNC_MAIN:
        return Kind.SYNC_POOL
    patterns = [
        (r"-m cli up\b", Kind.SUPERVISOR), (r"cli\.up\.watchdog", Kind.WATCHDOG), (r"redis-server", Kind.REDIS),
        (r"-Q sync\b", Kind.SYNC_MAIN), (r"-Q provisioning\b", Kind.PROVISIONING), (r"\bbeat\b", Kind.BEAT),
        (r"\bflower\b", Kind.FLOWER), (r"-m cli api\b", Kind.API), (r"-m cli simulator\b", Kind.SIMULATOR),
    ]
    return next((kind for pattern, kind in patterns if re.search(pattern, cmdline)), Kind.OTHER)


def _pss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _process_table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry)] = (parent, cmdline)
    return table


def tree_by_kind(root: int) -> dict[int, Kind]:
    """Every live process of the tree under ``root`` (itself included), with its kind."""
    table = _process_table()
    if root not in table:
        return {}
    kinds = {root: kind_of(table[root][1], None)}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid == parent and pid not in kinds:
                kinds[pid] = kind_of(cmdline, kinds[parent])
                frontier.append(pid)
    return kinds


@dataclass
class Sample:
    at: float
    by_kind: dict[Kind, float]   # summed PSS (MB) of the kind's processes
    processes: dict[Kind, int]
    largest: dict[Kind, float]   # the kind's largest single process (MB)


@dataclass
class TreeSampler:
    """Samples the PSS of every process under ``root`` every ``SAMPLE_EVERY_S`` seconds, on a thread."""

    root: int
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Sample:
        by_kind: dict[Kind, float] = {}
        processes: dict[Kind, int] = {}
        largest: dict[Kind, float] = {}
        for pid, kind in tree_by_kind(self.root).items():
            pss = _pss_mb(pid)
            if pss is None:
                continue
            by_kind[kind] = by_kind.get(kind, 0.0) + pss
            processes[kind] = processes.get(kind, 0) + 1
            largest[kind] = max(largest.get(kind, 0.0), pss)
        taken = Sample(time.time(), by_kind, processes, largest)
        self.samples.append(taken)
        return taken

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)


def fleet_mb(sample: Sample) -> float:
    return sum(mb for kind, mb in sample.by_kind.items() if kind not in NOT_DEPLOYED)


def summarise(samples: list[Sample], idle: Sample) -> dict:
    """Per kind: processes, idle and peak (summed), the largest single process at its peak; the fleet's total."""
    kinds: dict[str, dict] = {}
    for kind in Kind:
        peaks = [s.by_kind[kind] for s in samples if kind in s.by_kind]
        if not peaks:
            continue
        kinds[kind.value] = {
            "processes": max(s.processes.get(kind, 0) for s in samples),
            "idle_mb": round(idle.by_kind.get(kind, 0.0), 1),
            "peak_mb": round(max(peaks), 1),
            "largest_process_peak_mb": round(max(s.largest.get(kind, 0.0) for s in samples), 1),
        }
    return {"kinds": kinds, "fleet_idle_mb": round(fleet_mb(idle), 1),
            "fleet_peak_mb": round(max(fleet_mb(s) for s in samples), 1)}


# --- running up ----------------------------------------------------------------------------------------------

class UpRun:
    """``python -m cli up`` in ``directory`` (its own var/, Redis and SQLite database), output to up.out."""

    def __init__(self, directory: Path, env: dict[str, str], config: Path | None) -> None:
        self.directory = directory
        self.env = env
        self.out = directory / "up.out"
        args = [sys.executable, "-m", "cli", "up", "--flower-port", str(free_port()), "--api-port", str(free_port())]
        if config is not None:
            args += ["--config", str(config)]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.out.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"jumpsync up exited ({self.proc.returncode}): see {self.out}")
            time.sleep(0.5)
        raise TimeoutError(f"no {text!r} from jumpsync up within {timeout:.0f}s: see {self.out}")

    def command(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """A jumpsync command in up's folder: it uses up's settings, as a person's would."""
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.directory, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _config(sim: Simulator) -> str:
    return (f'[[connectors]]\nname = "{CONNECTOR}"\nbase_url = "{sim.url}"\napi_key_env = "{KEY_ENV}"\n'
            'interval = "24h"\n')


def measure(tenant: str, directory: Path, *, latency_ms: float, sync_timeout: float,
            log: Callable[[str], None]) -> dict:
    """``up`` on ``tenant`` (``demo`` or a bench profile): its first sync, a second full sync, then idle."""
    directory.mkdir(parents=True, exist_ok=True)
    sim = None
    config = None
    extra: dict[str, str] = {}
    if tenant != DEMO:
        api_key = secrets.token_hex(20)
        sim = Simulator(directory, tenant, latency_ms, api_key)
        sim.wait_ready(timeout=600)
        config = directory / "jumpsync.toml"
        config.write_text(_config(sim))
        extra[KEY_ENV] = api_key
    connector = DEMO if sim is None else CONNECTOR
    up = None
    sampler = None
    try:
        started = time.monotonic()
        up = UpRun(directory, {**clean_env(), **extra}, config)  # a person's shell
        sampler = TreeSampler(up.proc.pid).start()
        up.wait_for(f"{connector}: first sync succeeded", sync_timeout)
        first_sync_s = round(time.monotonic() - started, 1)
        log(f"footprint {tenant}: first sync after {first_sync_s}s; a second full sync")
        again = up.command("sync", connector, "--wait", "--timeout", str(sync_timeout), timeout=sync_timeout + 60)
        if again.returncode != 0:
            raise RuntimeError(f"the second sync did not succeed: {again.stdout[-500:]} {again.stderr[-500:]}")
        time.sleep(SETTLE_S)
        idle = sampler.sample()
        sampler.stop()
        figures = summarise(sampler.samples, idle)
    finally:
        if sampler is not None:
            sampler.stop()
        if up is not None:
            up.stop()
        if sim is not None:
            sim.stop()
    log(f"footprint {tenant}: fleet {figures['fleet_idle_mb']:.0f} MB idle, {figures['fleet_peak_mb']:.0f} MB "
        f"at its peak")
    return {"tenant": tenant, "first_sync_s": first_sync_s, **figures}
