"""Reads that make objects by the hundred thousand (the access export, the report's findings).

CPython's cyclic garbage collector runs a full collection when enough new container objects have survived,
and each full collection traverses every object of the process: a large export sets off collections that
find nothing, since rows, parts and findings hold no reference cycles.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (reference counting still frees what is dropped), and
    back on after it unless it was off before. Objects made meanwhile are collected as usual afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
