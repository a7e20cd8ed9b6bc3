"""What a running ``jumpsync up`` leaves in ``var/`` for others to find: its pid file, held locked while it runs,
and the settings file that points other ``jumpsync`` commands at it.

The lock (``flock`` on the pid file) is what says "running": the kernel drops it when the process ends, however
it ends, so a pid file left by a killed ``up`` is never taken for a live one. Every process ``up`` starts carries
``JUMPSYNC_UP_ID`` in its environment (children of children inherit it), which is how a later ``up`` finds the
leftovers of an earlier one. Redis rewrites its own environment for its process title, so the pid file also
records each child's pid with its start time (which tells it from a later process given the same pid).

The settings file holds the broker URL with the password of ``up``'s Redis (or of the broker it was given) and
the database URL with its password, if it has one: a command run later in another shell connects with them, and
has nowhere else to read them from. So it is a secret file, written mode 600 and saying so, like the other
secrets ``up`` keeps in ``var/`` (Redis's config, Flower's login); the note that says which settings a command
took from it names them, never their values.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

VAR = Path("var")
PID_FILE = VAR / "up.pid"
ENV_FILE = VAR / "jumpsync.env"
#: The local Redis's configuration, with its password (``requirepass``).
REDIS_CONF = VAR / "redis.conf"
#: Flower's login under ``up``, ``user:password``: kept across runs, never printed.
FLOWER_AUTH_FILE = VAR / "flower-auth"
MARKER_ENV = "JUMPSYNC_UP_ID"
#: The settings ``up`` hands to other commands through ``ENV_FILE`` (the broker URL carries a password).
SHARED_SETTINGS = ("JUMPSYNC_BROKER_URL", "JUMPSYNC_CONFIG", "JUMPSYNC_DATABASE_URL")
#: How the note of a command that took them names them: what, not the values (one short line, no URL in it).
SETTING_NAMES = {"JUMPSYNC_BROKER_URL": "broker", "JUMPSYNC_CONFIG": "config", "JUMPSYNC_DATABASE_URL": "database"}


@dataclass
class UpRecord:
    """The pid file's content: who the running (or last) ``up`` is and what it started."""

    pid: int
    marker: str
    started_at: str
    children: dict[str, int] = field(default_factory=dict)
    #: Each child's start time in clock ticks since boot (``/proc/PID/stat``), by name.
    child_starts: dict[str, int] = field(default_factory=dict)

    def dump(self) -> str:
        return json.dumps({"pid": self.pid, "marker": self.marker, "started_at": self.started_at,
                           "children": self.children, "child_starts": self.child_starts}) + "\n"

    @classmethod
    def load(cls, text: str) -> UpRecord | None:
        try:
            data = json.loads(text)
            return cls(pid=int(data["pid"]), marker=str(data["marker"]), started_at=str(data.get("started_at", "")),
                       children={str(k): int(v) for k, v in (data.get("children") or {}).items()},
                       child_starts={str(k): int(v) for k, v in (data.get("child_starts") or {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def live_children(self) -> dict[int, str]:
        """The recorded children still running (same pid and start time): pid → name."""
        return {pid: name for name, pid in self.children.items()
                if start_ticks(pid) is not None and start_ticks(pid) == self.child_starts.get(name, start_ticks(pid))}


class AlreadyRunning(RuntimeError):
    """Another ``up`` holds the pid file, or processes of an earlier one are still alive."""


def new_marker() -> str:
    return f"{os.getpid()}-{secrets.token_hex(6)}"


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None for a process gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields


def start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def processes_with_marker(marker: str) -> list[int]:
    """Pids of the live processes whose environment carries ``JUMPSYNC_UP_ID=marker`` (Linux ``/proc``)."""
    wanted = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and _stat(int(entry.name)) is not None:
            found.append(int(entry.name))
    return sorted(found)


def leftovers_of(record: UpRecord) -> dict[int, str]:
    """What an ``up`` started that is still running: pid → the child's name (``child`` for a pool process)."""
    found = {pid: "child" for pid in processes_with_marker(record.marker)}
    found.update(record.live_children())
    return dict(sorted(found.items()))


def _read(fd: int) -> UpRecord | None:
    os.lseek(fd, 0, os.SEEK_SET)
    return UpRecord.load(os.read(fd, 65536).decode("utf-8", "replace"))


class PidFile:
    """``var/up.pid``, locked for as long as this ``up`` runs."""

    def __init__(self, path: Path = PID_FILE) -> None:
        self.path = path
        self.fd: int | None = None
        self.record: UpRecord | None = None

    def acquire(self, record: UpRecord) -> None:
        """Take the lock and write ``record``; AlreadyRunning names the ``up`` or the leftovers in the way."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read(fd)
            os.close(fd)
            who = f"pid {other.pid}, started {other.started_at}" if other else "pid unknown"
            raise AlreadyRunning(
                f"jumpsync up is already running in this folder ({who}); stop it first (Ctrl-C in its terminal"
                + (f", or kill {other.pid}" if other else "") + "), or start this one from another folder") from None
        earlier = _read(fd)
        leftovers = leftovers_of(earlier) if earlier else {}
        if earlier is not None and leftovers:
            os.close(fd)
            listed = ", ".join(f"{name} {pid}" for pid, name in leftovers.items())
            raise AlreadyRunning(
                f"processes of an earlier jumpsync up (pid {earlier.pid}) are still running: {listed}; "
                f"stop them first: kill {' '.join(map(str, leftovers))}")
        self.fd = fd
        self.write(record)

    def write(self, record: UpRecord) -> None:
        assert self.fd is not None
        self.record = record
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, record.dump().encode())

    def release(self, *, remove: bool) -> None:
        """Drop the lock; ``remove`` deletes the file (a clean stop: nothing was left behind)."""
        if self.fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def running_up(path: Path = PID_FILE) -> UpRecord | None:
    """The ``up`` running in this folder (its pid file is locked), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or UpRecord(pid=0, marker="", started_at="")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (mode 600, also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_env_file(values: dict[str, str], path: Path = ENV_FILE) -> None:
    lines = ["# Written by `jumpsync up`: the settings other jumpsync commands use beside it, removed when it stops.\n",
             "# SECRETS: the broker and database URLs carry their passwords. Keep this file private (mode 600).\n"]
    lines += [f"export {key}={values[key]}\n" for key in SHARED_SETTINGS if values.get(key)]
    write_private(path, "".join(lines))


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    values = {}
    try:
        text = path.read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep and key.strip() in SHARED_SETTINGS:
            values[key.strip()] = value.strip()
    return values


def adopt_settings(environ: dict[str, str] | None = None, given: tuple[str, ...] = ()) -> str | None:
    """Point this process at the ``up`` running in the current folder, for the settings not already set in
    ``environ`` (default ``os.environ``) nor named in ``given`` (such as ``JUMPSYNC_CONFIG`` for ``--config``).

    Returns a short line naming the settings taken (for stderr; their values are in ``ENV_FILE``), or None when
    no ``up`` runs here or every setting was given already.
    """
    env = os.environ if environ is None else environ
    up = running_up()
    if up is None:
        return None
    values = {k: v for k, v in read_env_file().items() if not env.get(k) and k not in given}
    if not values:
        return None
    env.update(values)
    used = ", ".join(SETTING_NAMES[key] for key in SHARED_SETTINGS if key in values)
    return f"using {used} of the jumpsync up running here (pid {up.pid})"
