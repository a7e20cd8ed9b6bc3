"""A pool process gives the memory a heavy task freed back to the system, and keeps sharing what its parent
imported (worker.memory): without the first, glibc keeps the freed heap mapped and the next task starts at the
last one's peak; without the second, a collection in the child copies the parent's objects."""

from __future__ import annotations

import subprocess
import sys

from celery import signals

from tests.support.constants import ROOT
from worker.names import HEAVY_TASKS, TaskName

#: A process that frees ~200 MB (the code given as ``free``), then calls ``release_freed_memory``: it prints its
#: RSS before and after.
_RELEASE_PROBE = """
import gc, re
from worker.memory import release_freed_memory

def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

{free}
before = rss_mb()
assert release_freed_memory()
print(before, rss_mb())
"""

_SCATTERED = """
blocks = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]  # ~200 MB of malloc'd blocks
kept = blocks[::50]  # a few survive, scattered: the heap cannot shrink from its top
del blocks
"""

_HELD_BY_CYCLES = """
gc.disable()  # as between two automatic collections of the oldest generation: cycles wait for one

class Node:
    def __init__(self):
        self.payload = bytes(1024)
        self.me = self  # held by a cycle only, as a task's sessions and connections are

nodes = [Node() for _ in range(200_000)]
del nodes
"""


def _freed_mb(free: str) -> tuple[float, float]:
    probe = _RELEASE_PROBE.format(free=free)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    return before, after


def test_the_freed_heap_goes_back_to_the_system():
    before, after = _freed_mb(_SCATTERED)
    assert before - after > 100, (before, after)  # most of the ~200 MB freed was still held before the trim


def test_what_only_cycles_hold_is_collected_and_given_back():
    before, after = _freed_mb(_HELD_BY_CYCLES)
    assert before - after > 100, (before, after)


def test_heavy_tasks_are_the_sync_queues_long_ones():
    assert TaskName.SYNC_PART in HEAVY_TASKS and TaskName.ACCESS_REFRESH in HEAVY_TASKS
    assert not any(task.queue.value == "provisioning" for task in HEAVY_TASKS)  # many small tasks: not worth it
    assert "jumpsync.sync.part" in HEAVY_TASKS  # Celery's task.name is a plain string


_FORK_PROBE = """
import gc, os, re, sys
from worker.memory import share_with_pool

def private_dirty_mb(pid):
    text = open(f"/proc/{pid}/smaps_rollup").read()
    return int(re.search(r"Private_Dirty:\\s+(\\d+)", text).group(1)) / 1024

gc.disable()  # as in a worker's main process between collections: the objects sit in the collector's lists
objects = [[i, [str(i)]] for i in range(500_000)]  # lists: tracked by the collector for good
if sys.argv[1] == "shared":
    share_with_pool()
read, write = os.pipe()
child = os.fork()
if child == 0:
    before = private_dirty_mb(os.getpid())
    gc.collect()  # what a pool process does, sooner or later
    os.write(write, f"{before} {private_dirty_mb(os.getpid())}".encode())
    os._exit(0)
os.waitpid(child, 0)
before, after = map(float, os.read(read, 100).split())
print(after - before)
"""


def _copied_by_a_collection_in_the_child(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _FORK_PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


def test_a_pool_process_collecting_garbage_does_not_copy_what_its_parent_shared():
    assert _copied_by_a_collection_in_the_child("shared") < 10
    assert _copied_by_a_collection_in_the_child("plain") > 40  # the probe measures what it claims to


def test_the_worker_shares_before_each_pool_process_is_forked():
    import worker.signals  # noqa: F401  (connects the hooks)

    receivers = [ref() for _, ref in signals.worker_before_create_process.receivers]
    assert any(getattr(receiver, "__name__", "") == "_share_memory_with_the_pool" for receiver in receivers)
