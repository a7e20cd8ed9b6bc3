"""Memory a pool process freed, given back to the system after heavy tasks.

A pool process shares its parent's memory until it writes to it. The garbage collector writes to every object it
looks at, so one full collection in a child copies most of what the parent imported: ``share_with_pool`` moves
the parent's objects out of the collector's reach just before the pool forks (``gc.freeze``).

A sync part or a rendering allocates hundreds of thousands of small objects and frees them at its end; glibc's
allocator keeps the freed heap mapped, so the process's RSS stays at its peak and the next task in the same
process starts from there (a re-sync peaking at the last rendering's size). ``malloc_trim(0)`` returns the free
pages at once; it costs milliseconds, so it runs only after the tasks that allocate much.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library: nothing to do)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Collect what only reference cycles still hold (a task's clients, sessions and connections are such
    cycles), then give the allocator's free pages back to the system; False where the C library cannot. The
    collection leaves the parent's frozen objects alone (``share_with_pool``)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def share_with_pool() -> None:
    """In a prefork worker's main process, just before it forks a pool process: the objects it holds go to the
    collector's permanent generation, which no collection in the child visits (so their pages stay shared)."""
    gc.freeze()
