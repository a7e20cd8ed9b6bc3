"""connector.client_factory: the client of a connector, and the response observer a process installs for all."""

from __future__ import annotations

import pytest

from config.connector import ConnectorConfig
from connector.client_factory import describe_error, make_client, observe_responses
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV


@pytest.fixture
def connector(monkeypatch) -> ConnectorConfig:
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)
    return ConnectorConfig(name="acme", api_key_env=TEST_KEY_ENV)


def test_clients_report_to_the_observer_installed_for_the_process(connector):
    seen: list[str] = []

    def observer(name: str):
        seen.append(name)
        return lambda *_response: None

    assert make_client(connector).on_response is None  # nothing installed: no metrics
    observe_responses(observer)
    try:
        assert make_client(connector).on_response is not None
        assert seen == ["acme"]
    finally:
        observe_responses(None)
    assert make_client(connector).on_response is None


def test_an_error_is_one_short_line_with_its_type():
    assert describe_error(ValueError("x" * 5000)).startswith("ValueError: xxx")
    assert len(describe_error(ValueError("x" * 5000))) == 2000
    assert describe_error(KeyError()) == "KeyError: KeyError"
