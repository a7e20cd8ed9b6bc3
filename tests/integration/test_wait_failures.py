"""Every ``--wait`` ends within seconds when the workers end the task at once without the outcome it waits for:
here the commands run with a config file that names connector ``a`` (and ``[[msp]]`` table ``m``) while the
workers' config file knows neither. A sync or a discovery raises ``ConfigError`` in milliseconds, a refresh
returns ``off``, an apply records the request ``rejected``. The command prints why (and no secret) and exits
1, instead of waiting out its timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import update

from models.tables import ProvisioningRequest
from tests.support.constants import ROOT, TEST_API_KEY, TEST_KEY_ENV

pytestmark = [pytest.mark.integration, pytest.mark.long]

#: Far longer than the test allows a command: a command that waits it out fails the test.
TIMEOUT = "600"
#: How long a command may take to notice: process start-up (a second or two) and a few polls.
NOTICE_WITHIN = 30.0


@pytest.fixture(scope="module")
def other(fleet, tmp_path_factory):
    """A config file the workers do not have, and the environment pointing at the fleet's database and broker."""
    path = tmp_path_factory.mktemp("other") / "other.toml"
    path.write_text(f'[[connectors]]\nname = "a"\napi_key_env = "{TEST_KEY_ENV}"\n\n'
                    f'[[msp]]\nname = "m"\napi_key_env = "{TEST_KEY_ENV}"\n')
    return path


def run(fleet, other, *args: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "cli", *args, "--config", str(other)], env=fleet.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=NOTICE_WITHIN + 30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(args)}: still waiting after {exc.timeout:.0f}s: {exc.stderr!r}") from None
    elapsed = time.monotonic() - started
    assert elapsed < NOTICE_WITHIN, f"{' '.join(args)} took {elapsed:.0f}s"
    assert TEST_API_KEY not in done.stdout + done.stderr
    return done


def flat(text: str) -> str:
    """The output without the line breaks a narrow terminal puts in."""
    return " ".join(text.split())


@pytest.mark.parametrize("args, what, why", [
    (("sync", "a", "--wait"), "the sync of a", "ConfigError: unknown connector 'a'"),
    (("sync", "a", "--wait", "--json"), "the sync of a", "ConfigError: unknown connector 'a'"),
    (("sync", "a", "--events", "--wait"), "the refresh of a", "events off or do not know this connector"),
    (("msp", "discover", "m", "--wait"), "the discovery of m", "ConfigError: unknown msp 'm'"),
])
def test_wait_ends_with_why_the_task_recorded_nothing(fleet, other, args, what, why):
    done = run(fleet, other, *args, "--timeout", TIMEOUT)
    assert done.returncode == 1, done
    error = flat(done.stderr)
    assert f"failed: {what}: " in error and why in error and "(task " in error, done.stderr
    assert "timed out" not in error and done.stdout == "", done


def test_provision_and_retry_wait_end_with_the_workers_error(fleet, fleet_engine, other):
    """The worker records the request ``rejected`` with why; ``requests retry --wait`` of a failed request meets
    the same."""
    done = run(fleet, other, "provision", "a", "group.add-member", "--group", "g1", "--user", "u1", "--wait",
               "--json", "--timeout", TIMEOUT)
    assert done.returncode == 1, done
    request = json.loads(done.stdout)
    assert request["status"] == "rejected" and "unknown connector 'a'" in request["last_error"], request
    with fleet_engine.begin() as connection:  # as if an earlier attempt had failed
        connection.execute(update(ProvisioningRequest).where(ProvisioningRequest.id == request["id"])
                           .values(status="failed"))
    again = run(fleet, other, "requests", "retry", request["id"], "--wait", "--timeout", TIMEOUT)
    assert again.returncode == 1, again
    assert "rejected" in again.stdout and "unknown connector 'a'" in flat(again.stdout), again
