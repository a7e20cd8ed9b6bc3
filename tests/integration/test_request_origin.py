"""Who asked for a request (``requested_by``, set by the entry point) and for whom (``on_behalf_of``, as the
caller says), recorded apart on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConnectorConfig, FileConfig, Settings
from provisioning import requests
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV

ADD = {"group": "g", "user": "u"}


def settings_for(db_url: str) -> Settings:
    """One connector, ``acme``, with the default provisioning policy (nothing is applied here)."""
    connector = ConnectorConfig(name="acme", base_url="http://127.0.0.1:9", api_key_env=TEST_KEY_ENV)
    return Settings(config_path=Path("t.toml"), database_url=db_url, broker_url="redis://unused",
                    file=FileConfig(connectors=(connector,)))


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def test_on_behalf_of_is_recorded_apart_from_the_requester(engine, db_url):
    settings = settings_for(db_url)
    accepted = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                               idempotency_key="T-1", requested_by="token:ticketing", on_behalf_of="alice@example.com")
    assert accepted.enqueue
    assert accepted.request["requested_by"] == "token:ticketing"
    assert accepted.request["on_behalf_of"] == "alice@example.com"
    assert requests.get(engine, accepted.request["id"]) == accepted.request


def test_a_rejected_request_keeps_on_behalf_of(engine, db_url):
    settings = settings_for(db_url)
    rejected = requests.accept(engine, settings, connector="nope", action="group.add-member", params=ADD,
                               requested_by="token:ticketing", on_behalf_of="bob@example.com")
    assert rejected.request["status"] == "rejected"
    assert requests.get(engine, rejected.request["id"])["on_behalf_of"] == "bob@example.com"
    clash = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                            idempotency_key="k")
    reused = requests.accept(engine, settings, connector="acme", action="group.remove-member", params=ADD,
                             idempotency_key="k", requested_by="token:t", on_behalf_of="carol")
    assert clash.request["on_behalf_of"] is None
    assert reused.request["status"] == "rejected" and reused.request["on_behalf_of"] == "carol"


def test_without_on_behalf_of_it_is_null(engine, db_url):
    accepted = requests.accept(engine, settings_for(db_url), connector="acme", action="group.add-member",
                               params=ADD, requested_by="cli:alice")
    assert accepted.request["on_behalf_of"] is None
    assert requests.listing(engine)[0]["on_behalf_of"] is None
