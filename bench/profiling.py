"""Optional py-spy sampling of the workers (``--py-spy``): where the wall time of a task goes.

py-spy is not a dependency of the project: ``.venv/bin/pip install py-spy`` to use it. Threads are sampled
idle or not (``--idle``), so a sample waiting for the API (the event loop in ``select``) or for the database
(SQLite's busy wait, a PostgreSQL round trip) counts as much as one computing: each category's share is a share
of the tasks' process-seconds. Only samples inside a task (``root`` frame) are counted.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

OURS = ("pipeline/", "models/", "connector/", "jumpcloud/", "tasks/", "provisioning/", "worker/")

def _tail(stack: list[str]) -> list[str]:
    """The frames below the deepest jumpsync frame: the library code it called."""
    deepest = max((i for i, f in enumerate(stack) if any(m in f for m in OURS)), default=-1)
    return stack[deepest + 1:]


def _deepest_ours(stack: list[str]) -> str:
    """The package of the deepest jumpsync frame, e.g. "connector/"."""
    for frame in reversed(stack):
        for marker in OURS:
            if marker in frame:
                return marker
    return ""


def _any(frames: list[str], *markers: str) -> bool:
    return any(m in f for f in frames for m in markers)


# (category, test on the stack: root first, leaf last); the first that matches wins.
CATEGORIES = (
    ("imports (first use in the process)", lambda st: _any(st, "_find_and_load")),
    ("waiting for the API (event loop idle in select)", lambda st: "select (selectors.py)" in st[-1]),
    ("database (execute, commit, lock waits)", lambda st: _any(st, "sqlalchemy/", "sqlite3", "psycopg")),
    ("content hash (json.dumps + sha1)", lambda st: _any(st, "content_hash")),
    ("JSON decode of pages", lambda st: _any(st, "json/decoder", "parse_json")),
    ("HTTP client (httpx, aiohttp, ssl)", lambda st: _any(_tail(st), "httpx/", "aiohttp/", "yarl/", "multidict/",
                                                          "httpcore/", "h11/", "anyio/", "ssl.py")),
    ("asyncio event loop", lambda st: _any(_tail(st), "asyncio/")),
    ("mapping records (connector/)", lambda st: _deepest_ours(st).endswith("connector/")),
    ("other jumpsync code", lambda st: _any(st[-1:], *OURS)),
    ("other", lambda st: True),
)


def available() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    def __init__(self, pids: list[int], out_prefix: Path, root: tuple[str, ...], rate: int = 50) -> None:
        self.files: list[Path] = []
        self.procs: list[subprocess.Popen] = []
        self.root = root
        self.rate = rate
        binary = available()
        if binary is None:
            raise RuntimeError("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
        for pid in pids:
            out = out_prefix.with_name(f"{out_prefix.name}-{pid}.txt")
            self.files.append(out)
            self.procs.append(subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--subprocesses", "--idle", "--format", "raw",
                 "--rate", str(rate), "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> dict:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        return summarize(self.files, self.root, self.rate)


def _frame(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number and the env prefix
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def summarize(files: list[Path], root: tuple[str, ...], rate: int, top: int = 12) -> dict:
    """Process-seconds by category, and the heaviest leaf frames, of the samples taken inside a task."""
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
            start = next((i for i, f in enumerate(frames) if any(f.startswith(r + " ") for r in root)), None)
            if start is None:
                continue  # the process was between tasks
            frames = frames[start:]
            n = int(count)
            total += n
            leaves[frames[-1]] += n
            for frame in set(frames):
                if any(marker in frame for marker in OURS):
                    inclusive[frame] += n
            categories[next(name for name, test in CATEGORIES if test(frames))] += n
    seconds = lambda n: round(n / rate, 2)
    share = lambda n: round(n / total, 3) if total else 0.0
    return {
        "rate_hz": rate, "task_samples": total, "task_process_seconds": seconds(total),
        "files": [str(p) for p in files],
        "categories": [{"category": c, "seconds": seconds(n), "share": share(n)} for c, n in categories.most_common()],
        "leaves": [{"frame": f, "seconds": seconds(n), "share": share(n)} for f, n in leaves.most_common(top)],
        "inclusive_project": [{"frame": f, "seconds": seconds(n), "share": share(n)}
                              for f, n in inclusive.most_common(top)],
    }
