"""``jumpsync up`` as a person runs it, beside its own earlier runs: a second one refuses to start, the leftovers
of a killed one are named, client commands run in its folder use its settings, and it keeps its secrets to
itself (tests/integration/test_up_signals.py ends it every way a person can).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.servers import free_port
from tests.support.up_process import JUMPSYNC, clean_env, marked, tree

pytestmark = [pytest.mark.integration, pytest.mark.long]

def test_a_second_up_beside_a_running_one_refuses_to_start(up, tmp_path):
    first = up()
    record = first.wait_for_first_sync()
    before = tree(first.proc.pid)
    second = subprocess.run(JUMPSYNC + ["up", "--flower-port", str(free_port()), "--api-port", str(free_port())],
                            cwd=tmp_path, env=clean_env(),
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
                                env=dict(clean_env(), JUMPSYNC_UP_ID="999999-abc"))
    try:
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "up.pid").write_text(json.dumps(
            {"pid": 999999, "marker": "999999-abc", "started_at": "2026-12-01T09:00:00+00:00",
             "children": {"redis": leftover.pid}}))
        result = subprocess.run(JUMPSYNC + ["up"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
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
    env = clean_env()
    status = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    entries = json.loads(status.stdout)  # stdout stays pure JSON; the note goes to stderr
    assert [e["connector"] for e in entries] == ["demo"] and entries[0]["configured"]
    assert entries[0]["last_run"]["status"] == "succeeded"
    assert entries[0]["next_sync_at"] is not None  # read from beat's entries in up's own Redis
    note = " ".join(status.stderr.split())
    assert note == f"using broker, config, database of the jumpsync up running here (pid {handle.proc.pid})"
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
    assert "using broker, database of the jumpsync up running here" in given.stderr
    # Another folder has no up: no note, the defaults.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    alone = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=60)
    assert alone.returncode == 2 and "jumpsync up running here" not in alone.stderr
    assert "no database yet" in alone.stderr and not (elsewhere / "jumpsync.db").exists()
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0
    after = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert "jumpsync up running here" not in after.stderr  # up has stopped: its settings are not used any more


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
    status = subprocess.run(JUMPSYNC + ["status", "--json"], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    printed = handle.output()
    assert "redis://:***@127.0.0.1" in printed and "var/flower-auth" in printed
    assert "using broker, config, database of the jumpsync up" in status.stderr
    places = {"up's output": printed, "status note": status.stderr,
              **{f"var/log/{p.name}": p.read_text(errors="replace") for p in (var / "log").glob("*.log")}}
    for place, text in places.items():
        for name, secret in hidden.items():
            assert secret not in text, f"the {name} is in {place}"
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0
    assert not (var / "redis.conf").exists()  # its Redis is gone: so is its password
