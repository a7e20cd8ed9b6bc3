"""The loopback ports of ``jumpsync up``'s children: which port each one gets, and when it really serves there.

A port answering is no proof that our child answers: another program may hold it (someone's Flower on 5555),
and a child that could not bind it is still starting, or already dead, while the other program answers. So a
child is ready when the kernel lists a listening socket on its port that the child itself holds open: the
socket's inode (``/proc/net/tcp``) is among the child's file descriptors (``/proc/PID/fd``). This asks the
kernel who owns the listener, with no protocol to fake and no window between a check and a bind; ``up`` is
Linux-only already (``PR_SET_PDEATHSIG``), and each child listens in the process ``up`` started (Redis, and
uvicorn and tornado serving in-process), so its own descriptors are the place to look.
"""

from __future__ import annotations

import enum
import os
import socket
import subprocess
import time

LOOPBACK = "127.0.0.1"
LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


class PortTaken(ValueError):
    """A port given on the command line is held by another program."""


class Readiness(enum.Enum):
    READY = "ready"
    EXITED = "exited"
    TIMED_OUT = "timed out"


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) ``port`` on loopback. SO_REUSEADDR as the servers set it: a connection
    still in TIME_WAIT does not count as taken, since it does not stop them from binding."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def given_port(port: int, option: str, *, has_default: bool = True) -> int:
    """A port the operator set: used as set, never moved; PortTaken when another program holds it."""
    if not port_free(port):
        raise PortTaken(f"port {port} ({option}) is taken on {LOOPBACK} by another program: choose another"
                        + (", or leave it out to get a free one" if has_default else ""))
    return port


def preferred_port(default: int) -> int:
    """``default`` if free, else any free port: a default is a preference."""
    return default if port_free(default) else free_port()


def choose_port(given: int | None, default: int, option: str) -> int:
    """``given`` (see ``given_port``), else ``default`` or a free port."""
    return given_port(given, option) if given is not None else preferred_port(default)


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on TCP ``port`` (any address, IPv4 or IPv6)."""
    wanted = f"{port:04X}"
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[1].rsplit(":", 1)[1] == wanted and fields[3] == LISTEN:
                found.add(fields[9])
    return found


def holds_listener(pid: int, port: int) -> bool:
    """``pid`` holds a socket listening on ``port``."""
    inodes = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


def wait_until_serving(proc: subprocess.Popen, port: int, timeout: float) -> Readiness:
    """Until ``proc`` itself listens on ``port``, or it exited, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return Readiness.EXITED
        if holds_listener(proc.pid, port):
            return Readiness.READY
        time.sleep(0.1)
    return Readiness.TIMED_OUT
