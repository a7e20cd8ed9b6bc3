"""A process under a restart loop, as systemd's ``Restart=always`` keeps a service: the chaos suite kills
workers and beat, takes their servers away, and whatever exits comes back a second later, as on a host.

The loop restarts a process whatever made it exit, and counts the exits: one a scenario caused (a SIGKILL) is
expected; any other is a process that did not ride out the fault, and the report says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: systemd's ``RestartSec``, short: the suite measures jumpsync's recovery, not the supervisor's patience.
RESTART_AFTER = 1.0
#: How long a stopped process may take to finish its tasks (SIGTERM: Celery's warm shutdown) before SIGKILL.
STOP_GRACE = 20.0


@dataclass
class Exit:
    at: float          # time.monotonic() when the loop found it gone
    returncode: int


@dataclass
class Supervised:
    """``spawn()`` starts the process in a session of its own (``start_new_session``): a kill of its process
    group takes the worker and its pool at once, as a lost host would."""

    name: str
    spawn: Callable[[], subprocess.Popen]
    exits: list[Exit] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Supervised:
        self.proc = self.spawn()
        self._thread = threading.Thread(target=self._loop, name=f"supervise-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _loop(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            self.exits.append(Exit(time.monotonic(), proc.returncode))
            if self._stopping.wait(RESTART_AFTER):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self.proc = self.spawn()

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing of the process runs on, nothing is given back."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def exits_since(self, since: float) -> list[Exit]:
        return [e for e in self.exits if e.at >= since]

    def stop(self) -> None:
        """End the loop, then the process: SIGTERM, and SIGKILL for its group after ``STOP_GRACE``."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the pool processes too, whether or not the main one ended
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
