"""The pieces of ``jumpsync up`` that others rely on: the locked pid file, the settings it hands to other
commands, and the watchdog that ends its children when it is gone. (The whole ``up`` under each signal is
tests/integration/test_up.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.up import state as up_state
from cli.up.state import AlreadyRunning, PidFile, UpRecord, adopt_settings, running_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _record(pid: int | None = None, **children: int) -> UpRecord:
    return UpRecord(pid=pid or os.getpid(), marker=f"{os.getpid()}-test", started_at="2026-12-04T09:13:43+00:00",
                    children=dict(children))


def test_the_pid_file_is_held_while_up_runs_and_free_after():
    first = PidFile()
    first.acquire(_record())
    assert running_up().pid == os.getpid()
    with pytest.raises(AlreadyRunning, match=rf"already running in this folder \(pid {os.getpid()}, started "
                                             r"2026-12-04T09:13:43\+00:00\).*kill"):
        PidFile().acquire(_record())
    first.release(remove=True)
    assert running_up() is None and not up_state.PID_FILE.exists()
    PidFile().acquire(_record())  # free again


def test_a_pid_file_whose_process_ended_is_not_running(tmp_path):
    up_state.VAR.mkdir()
    up_state.PID_FILE.write_text(_record(pid=999999).dump())
    assert running_up() is None
    held = PidFile()
    held.acquire(_record())  # nothing of the earlier one lives (no marked process, no recorded child)
    assert UpRecord.load(up_state.PID_FILE.read_text()).pid == os.getpid()


def test_a_recorded_child_alive_is_a_leftover_and_a_reused_pid_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        up_state.VAR.mkdir()
        earlier = _record(pid=999999, redis=child.pid)
        earlier.child_starts = {"redis": up_state.start_ticks(child.pid)}
        up_state.PID_FILE.write_text(earlier.dump())
        with pytest.raises(AlreadyRunning, match=rf"still running: redis {child.pid}; stop them first: kill {child.pid}"):
            PidFile().acquire(_record())
        earlier.child_starts = {"redis": up_state.start_ticks(child.pid) - 1}  # another process had that pid
        up_state.PID_FILE.write_text(earlier.dump())
        PidFile().acquire(_record())
    finally:
        child.kill()
        child.wait()


def test_commands_take_the_settings_of_the_running_up_that_are_not_given():
    held = PidFile()
    held.acquire(_record())
    up_state.write_env_file({"JUMPSYNC_BROKER_URL": "redis://127.0.0.1:6390/0", "JUMPSYNC_CONFIG": "/x/demo.toml",
                             "JUMPSYNC_DATABASE_URL": "sqlite:////x/jumpsync.db"})
    environ = {"JUMPSYNC_DATABASE_URL": "postgresql://mine/db"}
    said = adopt_settings(environ, given=("JUMPSYNC_CONFIG",))
    assert environ == {"JUMPSYNC_DATABASE_URL": "postgresql://mine/db", "JUMPSYNC_BROKER_URL": "redis://127.0.0.1:6390/0"}
    assert said == f"using broker of the jumpsync up running here (pid {os.getpid()})"
    assert adopt_settings(dict(environ), given=("JUMPSYNC_CONFIG",)) is None  # everything given: nothing said
    held.release(remove=True)
    assert adopt_settings({}) is None  # the env file without a running up is not used


def test_the_settings_file_is_private_and_the_note_hides_the_password():
    held = PidFile()
    held.acquire(_record())
    path = Path("var/jumpsync.env")
    path.write_text("old\n")
    path.chmod(0o644)  # as an earlier up left it
    up_state.write_env_file({"JUMPSYNC_BROKER_URL": "redis://:Pw-4f9c2e@127.0.0.1:6390/0"})
    assert path.stat().st_mode & 0o777 == 0o600 and "Pw-4f9c2e" in path.read_text()
    environ: dict[str, str] = {}
    said = adopt_settings(environ)
    assert environ == {"JUMPSYNC_BROKER_URL": "redis://:Pw-4f9c2e@127.0.0.1:6390/0"}
    assert said == f"using broker of the jumpsync up running here (pid {os.getpid()})"  # names, never values
    held.release(remove=True)


def _jumpsync(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPSYNC_")} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_command_beside_a_running_up_says_so_in_one_short_line_only_when_it_uses_its_settings():
    from models.db import make_engine
    from models.migrate import upgrade

    database = Path("up.db").resolve()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    engine.dispose()
    config = Path("var/jumpsync.demo.toml")
    held = PidFile()
    held.acquire(_record())  # this test process is the running up
    config.write_text("")
    up_state.write_env_file({"JUMPSYNC_BROKER_URL": "redis://:Pw-4f9c2e@127.0.0.1:9/0",
                             "JUMPSYNC_CONFIG": str(config.resolve()),
                             "JUMPSYNC_DATABASE_URL": f"sqlite:///{database}"})
    try:
        used = _jumpsync("status", "--json")
        assert used.returncode == 0, used.stderr
        assert used.stdout.strip() == "[]"  # up's empty config and migrated database, not ./jumpsync.db
        assert used.stderr == f"using broker, config, database of the jumpsync up running here (pid {os.getpid()})\n"
        assert len(used.stderr.rstrip("\n")) <= 80
        for unused in (["status", "--help"], ["--help"], ["status", "--no-such-option"]):
            result = _jumpsync(*unused)
            assert "jumpsync up" not in result.stderr, unused
    finally:
        held.release(remove=True)


@pytest.mark.parametrize("url,shown", [
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:s3cret@redis.internal:6380/1", "rediss://default:***@redis.internal:6380/1"),
    ("postgresql://jumpsync:s3cret@db:5432/jumpsync", "postgresql://jumpsync:***@db:5432/jumpsync"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("sqlite:////var/lib/jumpsync/jumpsync.db", "sqlite:////var/lib/jumpsync/jumpsync.db"),
    ("redis://:Bk@Tail@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),  # a raw @: up to the last one
    ("redis://:s3cret@127.0.0.1, mail bob@example.com", "redis://:***@127.0.0.1, mail bob@example.com"),
    ("failed: 'postgresql://u:s3cret@db/x' and redis://:p@w@r/0", "failed: 'postgresql://u:***@db/x' and redis://:***@r/0"),
])
def test_urls_are_shown_without_their_password(url, shown):
    from config.redact import redact

    assert redact(url) == shown


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_log_line_that_quotes_a_url_hides_its_password(fmt):
    """Whatever logs it (a library's message, an exception's text), in either format."""
    code = ("import logging; from telemetry import logs; logs.configure(%r)\n"
            "log = logging.getLogger('kombu')\n"
            "log.error('cannot connect to %%s', 'redis://:Pw-4f9c2e@10.0.0.9:6379/0')\n"
            "try:\n    raise OSError('postgresql://jumpsync:Pw-4f9c2e@db/jumpsync refused')\n"
            "except OSError:\n    log.exception('database down')\n") % fmt
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "redis://:***@10.0.0.9:6379/0" in result.stderr and "postgresql://jumpsync:***@db" in result.stderr
    assert "Pw-4f9c2e" not in result.stderr


def test_the_local_redis_reads_its_password_from_its_config():
    from cli.up.supervisor import redis_config

    text = redis_config(port=6390, directory=Path('/tmp/a "b"'), password="Pw-4f9c2e")
    assert "port 6390\n" in text and "bind 127.0.0.1\n" in text and 'requirepass "Pw-4f9c2e"\n' in text
    assert 'dir "/tmp/a \\"b\\""\n' in text


def test_the_watchdog_kills_the_groups_left_once_its_pipe_closes():
    read_end, write_end = os.pipe()
    watchdog = subprocess.Popen([sys.executable, "-m", "cli.up.watchdog", str(read_end), "1"], cwd=ROOT,
                                pass_fds=(read_end,))
    os.close(read_end)
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); time.sleep(60)"], start_new_session=True)
    os.write(write_end, f"{stubborn.pid}\n".encode())
    started = time.monotonic()
    os.close(write_end)  # what the kernel does when up ends, however
    assert watchdog.wait(timeout=10) == 0
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert 0.9 < time.monotonic() - started < 8  # it waited out its grace first


def test_the_watchdog_exits_at_once_when_nothing_is_left():
    read_end, write_end = os.pipe()
    watchdog = subprocess.Popen([sys.executable, "-m", "cli.up.watchdog", str(read_end), "30"], cwd=ROOT,
                                pass_fds=(read_end,))
    os.close(read_end)
    gone = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    gone.wait()
    os.write(write_end, f"{gone.pid}\n".encode())
    os.close(write_end)
    assert watchdog.wait(timeout=10) == 0


@pytest.mark.parametrize(("cores", "processes"), [(1, 2), (2, 2), (3, 3), (16, 4)])
def test_up_starts_one_sync_process_per_core_from_2_to_4(monkeypatch, cores, processes):
    """Without --concurrency, up's sync worker has a pool process per usable core (more would hold memory
    for no speed), never fewer than 2 nor more than 4; --concurrency still decides when given."""
    from typer.testing import CliRunner

    from cli.main import app
    from cli.up import supervisor

    started: list[int] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr(supervisor, "run_up", lambda **kwargs: started.append(kwargs["concurrency"]) or 0)
    runner = CliRunner()
    assert runner.invoke(app, ["up", "--once"]).exit_code == 0
    assert runner.invoke(app, ["up", "--once", "--concurrency", "7"]).exit_code == 0
    assert started == [processes, 7]
