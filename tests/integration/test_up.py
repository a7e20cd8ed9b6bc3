"""``jumpsync up`` as a person runs it: started in a folder of its own, then ended by Ctrl-C, SIGTERM, the
terminal closing (SIGHUP) or SIGKILL. Whatever ends it, nothing it started is alive 15 s later. The processes
are found in ``/proc`` by the process tree under ``up`` and by the environment marker every child carries
(``JUMPSYNC_UP_ID``; Redis overwrites its environment with its process title, the tree finds it), not by name and
not through the code under test. Beside a running ``up``, a second one refuses to start, and client
commands run in its folder use its settings.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JUMPSYNC = [sys.executable, "-m", "cli"]
GONE_WITHIN = 15.0


def _clean_env() -> dict[str, str]:
    """The environment of a person's shell: none of the test session's JUMPSYNC_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPSYNC_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _processes() -> dict[tuple[int, int], tuple[int, list[bytes]]]:
    """Every live (not zombie) process: (pid, start time) → (parent pid, environment)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if fields[0] != "Z":
            found[(int(entry), int(fields[19]))] = (int(fields[1]), environ)
    return found


def marked(marker: str) -> set[tuple[int, int]]:
    """Live processes whose environment holds JUMPSYNC_UP_ID=marker."""
    wanted = f"JUMPSYNC_UP_ID={marker}".encode()
    return {key for key, (_, environ) in _processes().items() if wanted in environ}


def tree(root: int) -> set[tuple[int, int]]:
    """The live descendants of ``root``."""
    processes = _processes()
    found: set[tuple[int, int]] = set()
    parents = {root}
    while True:
        more = {key for key, (ppid, _) in processes.items() if ppid in parents and key not in found}
        if not more:
            return found
        found |= more
        parents = {pid for pid, _ in more}


def still_alive(started: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return started & set(_processes())


class Up:
    """A ``jumpsync up`` in ``folder``, its output to a file or to a pseudo-terminal."""

    def __init__(self, folder: Path, *, terminal: bool = False) -> None:
        self.folder = folder
        self.out = folder / "up.out"
        self.master: int | None = None
        self.flower_port = free_port()
        args = JUMPSYNC + ["up", "--flower-port", str(self.flower_port), "--api-port", str(free_port()),
                           "--concurrency", "2"]
        if terminal:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(args, cwd=folder, env=_clean_env(), stdin=slave, stdout=slave,
                                         stderr=slave, start_new_session=True)
            os.close(slave)
        else:
            with open(self.out, "wb") as out:
                self.proc = subprocess.Popen(args, cwd=folder, env=_clean_env(), stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.screen = b""

    def output(self) -> str:
        if self.master is None:
            return self.out.read_text(errors="replace")
        while True:
            import select

            ready, _, _ = select.select([self.master], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk
        return re.sub(r"\x1b\[[0-9;]*m", "", self.screen.decode(errors="replace"))

    def wait_for_first_sync(self, timeout: float = 120.0) -> dict:
        """Until the first sync ended (every child, and the workers' pools, started); the pid file's record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "first sync succeeded" in self.output():
                return json.loads((self.folder / "var" / "up.pid").read_text())
            assert self.proc.poll() is None, f"jumpsync up exited {self.proc.returncode}:\n{self.output()}"
            time.sleep(0.5)
        raise AssertionError(f"no first sync within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(folder: Path | None = None, **kwargs) -> Up:
        handle = Up(folder or tmp_path, **kwargs)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def _alive_after(started: set[tuple[int, int]], marker: str, within: float) -> set[tuple[int, int]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = still_alive(started) | marked(marker)
        if not alive:
            return set()
        time.sleep(0.25)
    return still_alive(started) | marked(marker)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"])
def test_nothing_up_started_outlives_it(up, how):
    handle = up(terminal=how == "SIGHUP")
    record = handle.wait_for_first_sync()
    marker = record["marker"]
    started = tree(handle.proc.pid) | marked(marker)
    # Redis, simulator, two workers, beat, Flower, the API: seven children, and the workers' pool processes.
    assert set(record["children"]) == {"redis", "simulator", "worker", "provisioning-worker", "beat", "flower", "api"}
    assert set(record["children"].values()) <= {pid for pid, _ in started} and len(started) >= 7 + 2 + 2
    api_url = re.search(r"API: +(http://127\.0\.0\.1:\d+)", handle.output())
    assert api_url, handle.output()  # the API on loopback, its URL printed
    with urllib.request.urlopen(f"{api_url.group(1)}/healthz", timeout=10) as answer:
        assert json.loads(answer.read()) == {"ok": True}
    if how == "SIGHUP":  # the terminal window closes: its side of the terminal goes, then the hang-up
        os.close(handle.master)
        handle.master = None
    handle.proc.send_signal(getattr(signal, how))
    assert _alive_after(started, marker, GONE_WITHIN) == set()
    handle.proc.wait(timeout=GONE_WITHIN)
    if how in ("SIGINT", "SIGTERM"):
        assert handle.proc.returncode == 0, handle.output()
    if how != "SIGKILL":  # a clean stop leaves no pid file and no settings for others to pick up
        assert not (handle.folder / "var" / "up.pid").exists()
        assert not (handle.folder / "var" / "jumpsync.env").exists()


def test_a_second_up_beside_a_running_one_refuses_to_start(up, tmp_path):
    first = up()
    record = first.wait_for_first_sync()
    before = tree(first.proc.pid)
    second = subprocess.run(JUMPSYNC + ["up", "--flower-port", str(free_port()), "--api-port", str(free_port())],
                            cwd=tmp_path, env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"jumpsync up is already running in this folder (pid {record['pid']}" in second.stdout
    assert tree(first.proc.pid) == before  # it stopped nothing of the first
    assert not list((tmp_path / "var" / "log").glob("*.log.1"))
    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=60) == 0


def test_up_names_the_leftovers_of_an_earlier_one_and_starts_nothing(tmp_path):
    """A pid file whose up is gone but whose child lives (here a stand-in with the earlier run's marker)."""
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                env=dict(_clean_env(), JUMPSYNC_UP_ID="999999-abc"))
    try:
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "up.pid").write_text(json.dumps(
            {"pid": 999999, "marker": "999999-abc", "started_at": "2026-12-01T09:00:00+00:00",
             "children": {"redis": leftover.pid}}))
        result = subprocess.run(JUMPSYNC + ["up"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        out = " ".join(result.stdout.split())
        assert f"processes of an earlier jumpsync up (pid 999999) are still running: redis {leftover.pid}" in out
        assert f"kill {leftover.pid}" in out
        assert not (tmp_path / "var" / "log").exists()  # nothing was started
    finally:
        leftover.kill()
        leftover.wait()


def test_a_pid_file_left_by_a_killed_up_does_not_stop_the_next(up, tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "up.pid").write_text(json.dumps(
        {"pid": 999999, "marker": "999999-gone", "started_at": "2026-12-01T09:00:00+00:00", "children": {}}))
    handle = up()
    record = handle.wait_for_first_sync()
    assert record["pid"] == handle.proc.pid


def test_commands_in_the_folder_of_a_running_up_use_its_settings(up, tmp_path):
    handle = up()
    handle.wait_for_first_sync()
    env = _clean_env()
    status = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    entries = json.loads(status.stdout)  # stdout stays pure JSON; the note goes to stderr
    assert [e["connector"] for e in entries] == ["demo"] and entries[0]["configured"]
    assert entries[0]["last_run"]["status"] == "succeeded"
    assert entries[0]["next_sync_at"] is not None  # read from beat's entries in up's own Redis
    note = " ".join(status.stderr.split())
    assert f"using the settings of the jumpsync up running here (pid {handle.proc.pid}, var/jumpsync.env)" in note
    assert f"config={tmp_path / 'var' / 'jumpsync.demo.toml'}" in note
    # A newcomer's second terminal: tables in a pipe are TSV, at 80 columns they fit, a typo is offered the name.
    piped = subprocess.run(JUMPSYNC + ["resources", "demo", "--type", "app"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout.splitlines()[0] == "type\tid\tname\temail\tstatus\tdeleted", piped.stderr
    app_name = piped.stdout.splitlines()[1].split("\t")[2]
    drawn = subprocess.run(JUMPSYNC + ["status"], cwd=tmp_path, env={**env, "TTY_COMPATIBLE": "1", "COLUMNS": "80",
                                                                     "NO_COLOR": "1"},
                           capture_output=True, text=True, timeout=60)
    assert drawn.stdout.startswith("connector") and all(len(line) <= 80 for line in drawn.stdout.splitlines())
    typo = subprocess.run(JUMPSYNC + ["who-has", "demo", f"app:{app_name[:-1]}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "did you mean:" in typo.stderr and app_name in typo.stderr
    # What is set explicitly wins, and is not reported as taken from up.
    other = tmp_path / "other.toml"
    other.write_text('[[connectors]]\nname = "elsewhere"\napi_key_env = "NOPE"\n')
    given = subprocess.run(JUMPSYNC + ["status", "--json", "--config", str(other)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert given.returncode == 0, given.stderr
    assert "elsewhere" in {e["connector"] for e in json.loads(given.stdout)}
    assert "config=" not in given.stderr and "database_url=" in given.stderr
    # Another folder has no up: no note, the defaults.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    alone = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=60)
    assert alone.returncode == 2 and "using the settings" not in alone.stderr
    assert "run `jumpsync db upgrade`" in alone.stderr  # its own ./jumpsync.db, new and empty
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0
    after = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert "using the settings" not in after.stderr  # up has stopped: its settings are not used any more


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.decode(errors="replace").partition("=")[::2] for item in f.read().split(b"\0") if item)


def test_up_keeps_its_secrets_to_itself(up, tmp_path):
    """Redis and Flower need a password; every password is in a file of mode 600 under var/, in no process's
    command line, not in what up prints nor in its logs; the API key only in the workers' and simulator's
    environment; and Flower starts no provisioning."""
    handle = up()
    record = handle.wait_for_first_sync()
    var = tmp_path / "var"
    conf = (var / "redis.conf").read_text()
    broker_password = re.search(r'^requirepass "([^"]+)"$', conf, re.M).group(1)
    login = (var / "flower-auth").read_text().strip()
    user, _, flower_password = login.partition(":")
    children = record["children"]
    demo_key = _environ(children["worker"])["JUMPSYNC_DEMO_API_KEY"]
    hidden = {"broker password": broker_password, "Flower password": flower_password, "API key": demo_key}
    assert all(len(secret) >= 20 for secret in hidden.values())
    for path in (var, var / "redis.conf", var / "flower-auth", var / "jumpsync.env"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is open to other users"
    assert broker_password in (var / "jumpsync.env").read_text()

    # No secret in any command line (every local user reads them in ps).
    for pid, _ in tree(handle.proc.pid) | marked(record["marker"]):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        for name, secret in hidden.items():
            assert secret not in cmdline, f"the {name} is in the command line of pid {pid}: {cmdline!r}"
    # The key only where it is used.
    for name in ("worker", "provisioning-worker", "simulator"):
        assert demo_key in _environ(children[name]).values(), name
    for name in ("beat", "flower"):
        assert demo_key not in _environ(children[name]).values(), f"{name} was given the API key"
    # Flower's login only to Flower; the broker URL not to the simulator.
    assert {name for name in children if "JUMPSYNC_FLOWER_BASIC_AUTH_FILE" in _environ(children[name])} == {"flower"}
    assert "JUMPSYNC_BROKER_URL" not in _environ(children["simulator"])

    # Redis wants the password; Flower a login, and then starts no provisioning.
    port = int(re.search(r"^port (\d+)$", conf, re.M).group(1))
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    assert redis.Redis(port=port, password=broker_password).ping()
    base = f"http://127.0.0.1:{handle.flower_port}"
    assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
    assert httpx.get(f"{base}/api/workers", auth=(user, flower_password), timeout=30).status_code == 200
    refused = httpx.post(f"{base}/api/task/async-apply/jumpsync.provision.submit", auth=(user, flower_password),
                         json={"args": [1]}, timeout=10)
    assert refused.status_code == 403

    # What up printed, its logs and the note of a command run beside it name where secrets are, not what.
    status = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=_clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    printed = handle.output()
    assert "redis://:***@127.0.0.1" in printed and "var/flower-auth" in printed
    assert "broker_url=redis://:***@127.0.0.1" in " ".join(status.stderr.split())
    places = {"up's output": printed, "status note": status.stderr,
              **{f"var/log/{p.name}": p.read_text(errors="replace") for p in (var / "log").glob("*.log")}}
    for place, text in places.items():
        for name, secret in hidden.items():
            assert secret not in text, f"the {name} is in {place}"
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0
    assert not (var / "redis.conf").exists()  # its Redis is gone: so is its password
