"""The chaos suite's fleet and report, shared by its scenarios (they run in order, in one process: never under
pytest-xdist). ``JUMPSYNC_CHAOS_REPORT=docs/reliability.md`` writes the report there (``make chaos``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.chaos.fleet import Stack, start_stack
from tests.chaos.report import Report


@pytest.fixture(scope="session")
def report():
    collected = Report(started=time.monotonic())
    yield collected
    collected.finished = time.monotonic()
    target = os.environ.get("JUMPSYNC_CHAOS_REPORT")
    if target and collected.rows:
        collected.write(Path(target))


@pytest.fixture(scope="session")
def stack(report):
    """The fleet, started once; every process and server stopped at the end, whatever happened."""
    directory = Path(tempfile.mkdtemp(prefix="jumpsync-chaos-"))
    started: list[Stack] = []
    try:
        yield start_stack(directory, started)
    finally:
        for stack in started:
            stack.stop()
        if os.environ.get("JUMPSYNC_CHAOS_KEEP_LOGS"):
            print(f"chaos logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
