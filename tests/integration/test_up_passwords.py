"""The database's and the broker's passwords under ``jumpsync up``, as an operator gives them: in the URLs of
``JUMPSYNC_DATABASE_URL`` (a real PostgreSQL) and ``JUMPSYNC_BROKER_URL`` (a Redis that wants a password with a
raw ``@`` in it, which URL parsers take up to the authority's last ``@``). Each password is recognisable; after
``up``, the commands run beside it and one run after it, they are searched for in everything printed, every
file ``up`` left in its folder (its logs included) and every command line of its processes. Only
``var/jumpsync.env`` may hold them: it says so, and is mode 600.

The test server trusts local connections, so PostgreSQL ignores the password: what matters here is that it is
in the URL every jumpsync process is given.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database
from tests.support.servers import redis_with_password
from tests.support.up_process import JUMPSYNC, clean_env, marked, tree

pytestmark = pytest.mark.integration

DATABASE_PASSWORD = "Db-S3cretPw-7c41e9"
BROKER_PASSWORD = "Bk-9f3e@Tail-5d2a71"
#: What must show nowhere: each password, and each side of the broker's ``@`` (a redaction that stopped at the
#: first ``@`` would leave the tail).
HIDDEN = (DATABASE_PASSWORD, "Bk-9f3e", "Tail-5d2a71")


@pytest.fixture
def broker_with_password():
    """A Redis that wants ``BROKER_PASSWORD`` (tests.support.servers.redis_with_password)."""
    with redis_with_password(BROKER_PASSWORD) as url:
        yield url


def _run(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(JUMPSYNC + list(args), cwd=folder, env=clean_env() | (env or {}), capture_output=True,
                          text=True, timeout=120)


def test_passwords_in_the_urls_show_nowhere_but_in_the_private_settings_file(up, tmp_path, postgres_server_url,
                                                                           broker_with_password):
    database_url = fresh_postgres_database(postgres_server_url).replace(
        "postgresql://jumpsync@", f"postgresql://jumpsync:{DATABASE_PASSWORD}@")
    given = {"JUMPSYNC_DATABASE_URL": database_url, "JUMPSYNC_BROKER_URL": broker_with_password}
    handle = up(env=given)
    record = handle.wait_for_first_sync()
    printed = {"up": handle.output()}
    assert "database: postgresql://jumpsync:***@127.0.0.1" in printed["up"]
    assert "broker: redis://:***@127.0.0.1" in printed["up"]

    # Beside it, in a shell that has none of the settings: they come from var/jumpsync.env.
    beside = {" ".join(args): _run(tmp_path, *args) for args in (
        ("status",), ("status", "--json"), ("resources", "demo", "--type", "app"), ("health", "--json"),
        ("db", "current"))}
    for name, result in beside.items():
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "using broker, config, database of the jumpsync up running here" in result.stderr, name
        printed[f"{name} (stdout)"], printed[f"{name} (stderr)"] = result.stdout, result.stderr
    settings = tmp_path / "var" / "jumpsync.env"
    assert settings.stat().st_mode & 0o777 == 0o600
    header = [line for line in settings.read_text().splitlines() if line.startswith("#")]
    assert "SECRETS: the broker and database URLs carry their passwords" in " ".join(header)
    assert database_url in settings.read_text() and broker_with_password in settings.read_text()

    processes = tree(handle.proc.pid) | marked(record["marker"])
    command_lines = {}
    for pid, _ in processes:
        try:
            command_lines[f"command line of {pid}"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                errors="replace")
        except OSError:
            continue
    handle.proc.send_signal(signal.SIGTERM)
    assert handle.proc.wait(timeout=60) == 0
    printed["up"] = handle.output()
    assert not settings.exists()

    # After it, with the settings in the environment, as a person who exported them runs a command.
    after = _run(tmp_path, "status", env=given)
    assert after.returncode == 0, after.stderr
    printed["status after up (stdout)"], printed["status after up (stderr)"] = after.stdout, after.stderr

    files = {str(path.relative_to(tmp_path)): path.read_text(errors="replace")
             for path in tmp_path.rglob("*") if path.is_file()}
    assert any(name.startswith("var/log/") for name in files)
    for place, text in {**printed, **files, **command_lines}.items():
        for secret in HIDDEN:
            assert secret not in text, f"{secret!r} is in {place}"
