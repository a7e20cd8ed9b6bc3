"""Names as the commands take them: a connector name means the same in every command (``ACME`` is ``acme``,
``acm`` offers ``acme``) and a usage error exits 2 before anything is recorded; "did you mean" offers names that
begin with or contain what was typed; a request is named by a unique prefix of its id and listed with what it
targets; counts and states read as English."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from models.tables import ProvisioningRequest
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def synced(engine, db_url, simulator, run, monkeypatch):
    """``acme`` configured and synced once; the broker replaced by a list of what was sent."""
    from worker.celery_app import app as celery_app

    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)
    monkeypatch.setenv("ACME_KEY", TEST_API_KEY)
    sim = simulator()
    assert run_sync(make_settings(db_url, sim.url), engine).status == "succeeded"
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args=(), **kw: sent.append((name, list(args)))
                        or SimpleNamespace(id=f"task-{len(sent)}"))
    return SimpleNamespace(sim=sim, sent=sent, run=run)


def request_rows(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(ProvisioningRequest)).scalar_one()


def test_every_command_takes_a_connector_name_in_any_case(synced, engine):
    upper = NAME.upper()
    person = synced.sim.dump()["users"][0]["email"]
    result = synced.run("sync", upper)
    assert result.exit_code == 0, result.output
    assert synced.sent[-1][1] == [NAME]  # the worker is asked for the connector as configured
    for args in (("changes", upper), ("resources", upper), ("grants", upper), ("access", upper, person),
                 ("requests", "--connector", upper), ("audit", "--connector", upper)):
        result = synced.run(*args)
        assert result.exit_code == 0, (args, result.output)
    result = synced.run("provision", upper, "user.suspend", "--user", person, "--json")
    assert result.exit_code == 0, result.output
    assert '"connector": "acme"' in result.stdout and request_rows(engine) == 1


@pytest.mark.parametrize("args, message", [
    (("sync", "acm"), "unknown connector 'acm'; did you mean 'acme'?"),
    (("sync", "acm", "--events"), "unknown connector 'acm'; did you mean 'acme'?"),
    (("changes", "acm"), "connector 'acm' has never been synced (no rows in the database); did you mean 'acme'?"),
    (("resources", "acm"), "did you mean 'acme'?"),
    (("requests", "--connector", "acm"), "did you mean 'acme'?"),
    (("provision", "acm", "user.suspend", "--user", "x"), "unknown connector 'acm'; did you mean 'acme'?"),
    (("provision", "ACME", "user.suspnd", "--user", "x"), "unknown action 'user.suspnd'; did you mean 'user.suspend'"),
    (("provision", "ACME", "user.suspend"), "user.suspend: user is required"),
])
def test_a_usage_error_exits_2_with_the_suggestion_and_records_nothing(synced, engine, args, message):
    result = synced.run(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert synced.sent == [] and request_rows(engine) == 0


def test_only_a_request_the_policy_refuses_is_recorded_rejected(synced, engine):
    result = synced.run("provision", "Acme", "user.delete", "--user", "x", "--json")
    assert result.exit_code == 1
    assert '"status": "rejected"' in result.stdout and "user.delete is not allowed" in result.stdout
    assert request_rows(engine) == 1


def test_a_name_that_begins_or_contains_what_was_typed_is_offered(synced, engine, db_url):
    for label in ("Google Workspace (SAML)", "Google Workspace Admin", "Mail (Google Workspace)"):
        synced.sim.sim("POST", "/_sim/applications", json={"name": "custom", "displayLabel": label})
    assert run_sync(make_settings(db_url, synced.sim.url), engine).status == "succeeded"
    result = synced.run("who-has", "acme", "app:google")
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    offered = [said.index(label) for label in ("Google Workspace (SAML)", "Google Workspace Admin",
                                               "Mail (Google Workspace)")]
    assert offered[2] > max(offered[:2])  # names that begin with it before those that only contain it


def insert_request(engine, request_id: str, **values) -> None:
    from provisioning import requests as prequests

    recorded = prequests.accept_malformed(engine, {"connector": "acme", "action": "user.suspend"}, "test row")
    with engine.begin() as connection:
        connection.execute(ProvisioningRequest.__table__.update().where(
            ProvisioningRequest.__table__.c.id == recorded["id"]).values(id=request_id, **values))


def test_a_request_is_named_by_a_unique_prefix_of_its_id(synced, engine):
    insert_request(engine, "deadbeef" + "0" * 24)
    insert_request(engine, "deadbeef" + "1" * 24, status="succeeded")
    shown = synced.run("requests", "show", "DEADBEEF1", "--json")
    assert shown.exit_code == 0, shown.output
    assert f'"id": "deadbeef{"1" * 24}"' in shown.stdout
    several = synced.run("requests", "show", "deadbeef")
    assert several.exit_code == 2 and "begins the ids of several requests" in several.stderr
    short = synced.run("requests", "show", "deadbee")
    assert short.exit_code == 2 and "8 or more of its first characters" in short.stderr
    retried = synced.run("requests", "retry", "deadbeef1")
    assert retried.exit_code == 2, retried.output
    assert f"request deadbeef{'1' * 24} has succeeded; only a failed request can be retried" in retried.stderr


def test_requests_lists_what_each_request_targets_by_name(synced, engine):
    dump = synced.sim.dump()
    group, user = dump["groups"][0], dump["users"][0]
    result = synced.run("provision", "acme", "group.add-member", "--group", group["id"], "--user", user["email"])
    assert result.exit_code == 0, result.output
    listed = synced.run("requests", "-o", "tsv")
    header, row = listed.stdout.splitlines()[:2]
    target = row.split("\t")[header.split("\t").index("target")]
    assert target == f"group:{group['name']} user:{user['email']}"


def test_counts_read_in_the_singular_for_one(synced, engine, monkeypatch):
    from models import queries

    monkeypatch.setattr(queries, "refresh_since", lambda *a, **k: SimpleNamespace(
        outcome="quiet", requests=1, events=1, reads=0, reason=None))
    result = synced.run("sync", "acme", "--events", "--wait")
    assert "refresh quiet — 1 request, 1 new event, 0 read back" in " ".join(result.stdout.split()), result.output
