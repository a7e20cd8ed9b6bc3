"""A pool process gives the memory a heavy task freed back to the system (worker.memory): without it, glibc
keeps the freed heap mapped and the next task starts at the last one's peak."""

from __future__ import annotations

import subprocess
import sys

from tests.support.constants import ROOT
from worker.names import HEAVY_TASKS, TaskName

_PROBE = """
import re
from worker.memory import release_freed_memory

def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

blocks = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]  # ~200 MB of malloc'd blocks
kept = blocks[::50]  # a few survive, scattered: the heap cannot shrink from its top
del blocks
before = rss_mb()
assert release_freed_memory()
print(before, rss_mb())
"""


def test_the_freed_heap_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before - after > 100, (before, after)  # most of the ~200 MB freed was still held before the trim


def test_heavy_tasks_are_the_sync_queues_long_ones():
    assert TaskName.SYNC_PART in HEAVY_TASKS and TaskName.ACCESS_REFRESH in HEAVY_TASKS
    assert not any(task.queue.value == "provisioning" for task in HEAVY_TASKS)  # many small tasks: not worth it
    assert "jumpsync.sync.part" in HEAVY_TASKS  # Celery's task.name is a plain string
