"""``jumpsync flower``'s rules, without a broker: when it refuses to start, where its login comes from, and which
of Flower's endpoints it closes. (A real Flower over HTTP: tests/integration/test_observability.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli import flower
from tests.support.constants import ROOT

LOGIN = "ops:Correct-Horse-42"


@pytest.mark.parametrize("address,loopback", [
    ("127.0.0.1", True), ("127.3.0.9", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("", False), ("::", False), ("10.0.0.5", False), ("flower.internal", False),
])
def test_loopback_addresses(address, loopback):
    assert flower.is_loopback(address) is loopback


def test_the_login_reaches_flower_through_its_environment_only():
    assert flower.flower_environment({flower.AUTH_ENV: LOGIN}, address="0.0.0.0", no_auth=False) == {
        flower.FLOWER_AUTH_ENV: LOGIN}
    # Flower's own variable is a login too (and checked the same way).
    assert flower.flower_environment({flower.FLOWER_AUTH_ENV: LOGIN}, address="0.0.0.0", no_auth=False) == {
        flower.FLOWER_AUTH_ENV: LOGIN}
    with pytest.raises(flower.FlowerRefused, match=flower.FLOWER_AUTH_ENV):
        flower.flower_environment({flower.FLOWER_AUTH_ENV: "ops"}, address="127.0.0.1", no_auth=True)


def test_the_login_from_a_private_file(tmp_path):
    path = tmp_path / "flower-auth"
    path.write_text(LOGIN + "\n")
    path.chmod(0o600)
    assert flower.flower_environment({flower.AUTH_FILE_ENV: str(path)}, address="0.0.0.0", no_auth=False) == {
        flower.FLOWER_AUTH_ENV: LOGIN}
    path.chmod(0o644)
    with pytest.raises(flower.FlowerRefused, match="chmod 600"):
        flower.flower_environment({flower.AUTH_FILE_ENV: str(path)}, address="127.0.0.1", no_auth=False)
    with pytest.raises(flower.FlowerRefused, match="cannot be read"):
        flower.flower_environment({flower.AUTH_FILE_ENV: str(tmp_path / "nope")}, address="127.0.0.1",
                                  no_auth=False)


@pytest.mark.parametrize("value", ["ops", "ops:", ":Correct-Horse-42", "ops:Correct-Horse-42,admin"])
def test_a_malformed_login_is_refused_without_echoing_it(value):
    with pytest.raises(flower.FlowerRefused) as refused:
        flower.flower_environment({flower.AUTH_ENV: value}, address="127.0.0.1", no_auth=False)
    assert "Correct-Horse" not in str(refused.value)


def test_without_a_login_flower_starts_only_on_loopback_and_only_when_asked():
    with pytest.raises(flower.FlowerRefused, match="needs authentication"):
        flower.flower_environment({}, address="127.0.0.1", no_auth=False)
    for address in ("0.0.0.0", "", "10.0.0.5"):
        with pytest.raises(flower.FlowerRefused, match="loopback address only"):
            flower.flower_environment({}, address=address, no_auth=True)
    assert flower.flower_environment({}, address="127.0.0.1", no_auth=True) == {}
    # Flower's own OAuth counts as authentication.
    assert flower.flower_environment({flower.FLOWER_OAUTH_ENV: "flower.views.auth.GithubLoginHandler"},
                                     address="0.0.0.0", no_auth=False) == {}


def test_the_command_refuses_before_it_starts_anything():
    env = {k: v for k, v in os.environ.items()
           if k not in (flower.AUTH_ENV, flower.AUTH_FILE_ENV, flower.FLOWER_AUTH_ENV, flower.FLOWER_OAUTH_ENV)}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "cli", "flower", "--address", "0.0.0.0", "--port", "1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs authentication" in " ".join(done.stderr.split())


def test_the_task_starting_endpoints_are_closed():
    from flower import urls

    def handler_of(path: str):
        return next(h[1] if isinstance(h, tuple) else h.handler_class for h in urls.handlers
                    if flower._pattern(h) == path)

    originals = {path: handler_of(path) for path in flower.TASK_STARTING_PATHS}
    flower.close_task_starting_endpoints()
    for path in flower.TASK_STARTING_PATHS:
        assert handler_of(path) is not originals[path] and handler_of(path).__name__ == "TaskStartingRefused"
    assert handler_of(r"/api/tasks").__name__ == "ListTasks"  # reading stays
