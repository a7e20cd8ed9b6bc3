"""The watchdog of ``jumpsync up``: ends what ``up`` started once ``up`` is gone, however it ended.

``up`` starts this first, in a session of its own, and keeps the write end of a pipe to it; the kernel closes
that end when ``up`` ends, SIGKILL included. ``up`` writes the pid of each child it starts (each leads a process
group: the child and whatever it forks, a Celery worker's pool say). At end of file the watchdog gives the
groups still alive ``grace`` seconds to end on the parent-death signal they were started with, then kills them.
After a clean stop nothing is left, and it exits at once. It imports nothing of jumpsync: it must start fast and
must not fail on a broken config.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE_SECONDS = 8.0


def _alive(groups: set[int]) -> set[int]:
    alive = set()
    for group in groups:
        try:
            os.killpg(group, 0)
            alive.add(group)
        except ProcessLookupError:
            pass
        except PermissionError:
            alive.add(group)
    return alive


def watch(read_fd: int, grace: float = GRACE_SECONDS) -> None:
    groups: set[int] = set()
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe:
            if line.strip().isdigit():
                groups.add(int(line))
    deadline = time.monotonic() + grace
    while _alive(groups) and time.monotonic() < deadline:
        time.sleep(0.2)
    for group in _alive(groups):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for ``up`` is up's to handle
    watch(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else GRACE_SECONDS)
