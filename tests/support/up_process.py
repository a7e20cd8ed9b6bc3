"""``jumpsync up`` as a child process of a test, and the processes it started, found in ``/proc`` by the
process tree under ``up`` and by the environment marker every child carries (``JUMPSYNC_UP_ID``; Redis
overwrites its environment with its process title, the tree finds it), not by name and not through the code
under test."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JUMPSYNC = [sys.executable, "-m", "cli"]
GONE_WITHIN = 15.0


def clean_env() -> dict[str, str]:
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

    def __init__(self, folder: Path, *, terminal: bool = False, default_ports: bool = False,
                 env: dict[str, str] | None = None) -> None:
        """``default_ports``: no ``--flower-port``/``--api-port``, up picks them (``flower_port`` is then None);
        ``env``: variables added to a person's environment."""
        self.folder = folder
        self.out = folder / "up.out"
        self.master: int | None = None
        self.flower_port = None if default_ports else free_port()
        args = JUMPSYNC + ["up", "--concurrency", "2"]
        if not default_ports:
            args += ["--flower-port", str(self.flower_port), "--api-port", str(free_port())]
        environ = {**clean_env(), **(env or {})}
        if terminal:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(args, cwd=folder, env=environ, stdin=slave, stdout=slave,
                                         stderr=slave, start_new_session=True)
            os.close(slave)
        else:
            with open(self.out, "wb") as out:
                self.proc = subprocess.Popen(args, cwd=folder, env=environ, stdin=subprocess.DEVNULL,
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


def alive_after(started: set[tuple[int, int]], marker: str, within: float) -> set[tuple[int, int]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = still_alive(started) | marked(marker)
        if not alive:
            return set()
        time.sleep(0.25)
    return still_alive(started) | marked(marker)
