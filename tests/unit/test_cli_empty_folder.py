"""A command run where nothing was set up yet: it says so and what to run, and writes nothing (SQLite would
create the database file on the first connection, leaving an empty database that then asks for a migration)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _jumpsync(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPSYNC_")} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["resources", "demo"]])
def test_a_read_only_command_in_an_empty_folder_creates_no_database(tmp_path, args):
    result = _jumpsync(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"no database yet: {tmp_path / 'jumpsync.db'} does not exist" in message
    assert "run `jumpsync db upgrade` to create it" in message and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_db_current_in_an_empty_folder_says_there_is_none_and_creates_none(tmp_path):
    result = _jumpsync(tmp_path, "db", "current")
    assert result.returncode == 1
    assert "current: none (no database yet" in " ".join(result.stdout.split())
    assert list(tmp_path.iterdir()) == []
    upgraded = _jumpsync(tmp_path, "db", "upgrade")  # the remedy it names works
    assert upgraded.returncode == 0, upgraded.stderr
    assert _jumpsync(tmp_path, "status").returncode == 0
