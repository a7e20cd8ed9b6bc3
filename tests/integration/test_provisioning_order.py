"""Order per target (provisioning.ordering), without a broker, on SQLite and PostgreSQL: a request is claimed only
when nothing ahead of it on its account is pending or running, and whoever ends hands the account on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from config.actions import ACTION_NAMES
from models.states import RequestStatus
from models.tables import ProvisioningRequest
from provisioning import ordering, requests, runner
from tests.integration.test_provisioning_requests import _synced, settings_for
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV

LEASE = timedelta(minutes=10)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def _accept(engine, settings, action: str, **params) -> str:
    return requests.accept(engine, settings, connector="acme", action=action, params=params).request["id"]


def _target(engine, request_id: str) -> str | None:
    with engine.connect() as connection:
        return connection.execute(select(ProvisioningRequest.target_key)
                                  .where(ProvisioningRequest.id == request_id)).scalar_one()


def _next(engine, request_id: str) -> str | None:
    with engine.connect() as connection:
        return ordering.next_in_line(connection, "acme", _target(engine, request_id), request_id)


def test_one_account_one_line_in_the_order_recorded(engine, db_url):
    settings = settings_for(db_url)
    first = _accept(engine, settings, "group.add-member", group="g1", user="Alice@Example.com")
    second = _accept(engine, settings, "group.remove-member", group="g2", user="alice@example.com ")
    third = _accept(engine, settings, "user.suspend", user="alice@example.com")
    elsewhere = _accept(engine, settings, "group.add-member", group="g1", user="bob@example.com")

    assert requests.claim(engine, second, "t2", LEASE) is None  # the first is pending, ahead of it
    assert requests.claim(engine, elsewhere, "tb", LEASE) is not None  # another account: its own line
    assert requests.claim(engine, first, "t1", LEASE) is not None
    assert requests.claim(engine, second, "t2", LEASE) is None  # the first is running
    assert requests.get(engine, second)["status"] == "pending" and requests.get(engine, second)["attempts"] == 0

    assert requests.finish(engine, first, "t1", status=RequestStatus.SUCCEEDED)
    assert _next(engine, first) == second  # the first hands the account to the next in line, not the third
    assert requests.claim(engine, third, "t3", LEASE) is None
    assert requests.claim(engine, second, "t2", LEASE) is not None


def test_a_request_back_to_pending_keeps_its_place(engine, db_url):
    """A transient error puts a request back to pending: the ones behind it still wait, and nobody is handed
    the account (the request's own delayed message takes it)."""
    settings = settings_for(db_url)
    first = _accept(engine, settings, "group.add-member", group="g1", user="carol@example.com")
    second = _accept(engine, settings, "group.remove-member", group="g1", user="carol@example.com")
    assert requests.claim(engine, first, "t1", LEASE) is not None
    assert requests.finish(engine, first, "t1", status=RequestStatus.PENDING, error="503")
    assert _next(engine, first) is None
    assert requests.claim(engine, second, "t2", LEASE) is None
    assert requests.claim(engine, first, "t1b", LEASE) is not None


def test_a_request_awaiting_approval_holds_nothing(engine, db_url):
    settings = settings_for(db_url)
    waiting = requests.accept(engine, settings, connector="acme", action="group.add-member",
                              params={"group": "admins", "user": "dave@example.com"}, approval_floor=1).request
    assert waiting["status"] == "awaiting_approval"
    later = _accept(engine, settings, "group.add-member", group="g1", user="dave@example.com")
    assert requests.claim(engine, later, "t1", LEASE) is not None


def test_dry_runs_and_principals_other_than_accounts(engine, db_url):
    settings = settings_for(db_url, allowed_actions=list(ACTION_NAMES))
    dry = requests.accept(engine, settings, connector="dry", action="group.add-member",
                          params={"group": "g", "user": "erin@example.com"}).request["id"]
    assert _target(engine, dry) is None  # changes nothing: no line
    group_grant = _accept(engine, settings, "app.grant", app="Slack", group="Engineering")
    role = _accept(engine, settings, "role.set", admin="Root@Example.com", role="Help Desk")
    create = _accept(engine, settings, "user.create", email="New@Example.com", username="new")
    assert [_target(engine, rid) for rid in (group_grant, role, create)] == \
        ["group:engineering", "admin:root@example.com", "user:new@example.com"]


def test_an_email_and_an_id_of_one_synced_account_are_one_target(engine, db_url, simulator):
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    _synced(engine, settings)
    user = sim.dump()["users"][3]
    by_email = _accept(engine, settings, "user.suspend", user=user["email"].upper())
    by_id = _accept(engine, settings, "user.unsuspend", user=user["_id"])
    assert _target(engine, by_email) == _target(engine, by_id) \
        == f"user:{user['_id']}"
    assert requests.claim(engine, by_id, "t2", LEASE) is None


def test_the_runner_hands_the_account_on_when_it_ends(engine, db_url, simulator):
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    _synced(engine, settings)
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    add = _accept(engine, settings, "group.add-member", group=group["id"], user=user)
    remove = _accept(engine, settings, "group.remove-member", group=group["id"], user=user)
    assert runner.execute(engine, settings, remove, "t-remove").status is None  # behind the add: left pending
    done = runner.execute(engine, settings, add, "t-add")
    assert (done.status, done.next_request) == (RequestStatus.SUCCEEDED, remove)
    assert runner.execute(engine, settings, remove, "t-remove-2").status == RequestStatus.SUCCEEDED
    assert user not in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
