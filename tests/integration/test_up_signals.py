"""``jumpsync up`` ended by Ctrl-C, SIGTERM, the terminal closing (SIGHUP) or SIGKILL: whatever ends it, nothing
it started is alive 15 s later (tests/support/up_process.py finds its processes)."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request

import pytest

from tests.support.up_process import GONE_WITHIN, alive_after, marked, tree

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"])
def test_nothing_up_started_outlives_it(up, how):
    handle = up(terminal=how == "SIGHUP")
    record = handle.wait_for_first_sync()
    marker = record["marker"]
    started = tree(handle.proc.pid) | marked(marker)
    # up itself; Redis, simulator, two workers, beat, Flower, the API: seven children; the sync worker's pool
    # processes (the provisioning worker runs threads, no processes of its own).
    assert set(record["children"]) == {"redis", "simulator", "worker", "provisioning-worker", "beat", "flower", "api"}
    assert set(record["children"].values()) <= {pid for pid, _ in started} and len(started) >= 1 + 7 + 2
    api_url = re.search(r"API: +(http://127\.0\.0\.1:\d+)", handle.output())
    assert api_url, handle.output()  # the API on loopback, its URL printed
    with urllib.request.urlopen(f"{api_url.group(1)}/healthz", timeout=10) as answer:
        assert json.loads(answer.read()) == {"ok": True}
    if how == "SIGHUP":  # the terminal window closes: its side of the terminal goes, then the hang-up
        os.close(handle.master)
        handle.master = None
    handle.proc.send_signal(getattr(signal, how))
    assert alive_after(started, marker, GONE_WITHIN) == set()
    handle.proc.wait(timeout=GONE_WITHIN)
    if how in ("SIGINT", "SIGTERM"):
        assert handle.proc.returncode == 0, handle.output()
    if how != "SIGKILL":  # a clean stop leaves no pid file and no settings for others to pick up
        assert not (handle.folder / "var" / "up.pid").exists()
        assert not (handle.folder / "var" / "jumpsync.env").exists()
