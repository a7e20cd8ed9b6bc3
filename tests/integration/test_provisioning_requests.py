"""The provisioning request lifecycle and runner without a broker, on SQLite and on PostgreSQL; the runner
against the simulator over HTTP."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from config.settings import ConnectorConfig, FileConfig, ProvisioningPolicy, Settings
from connector.client_factory import make_client
from jumpcloud.budget import BudgetUnavailableError
from models import connectors, history, queries
from models.states import REQUESTS, IllegalTransition, RequestStatus
from pipeline import sync
from provisioning import requests, runner
from provisioning.clients import ProcessClients
from provisioning.params import InvalidRequest
from provisioning.writethrough import WriteThrough
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV

LEASE = timedelta(minutes=10)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def settings_for(db_url: str, base_url: str = "http://127.0.0.1:9", **policy) -> Settings:
    connectors = (
        ConnectorConfig(name="acme", base_url=base_url, api_key_env=TEST_KEY_ENV, max_attempts=1,
                        provisioning=ProvisioningPolicy(**policy)),
        ConnectorConfig(name="dry", base_url=base_url, api_key_env=TEST_KEY_ENV,
                        provisioning=ProvisioningPolicy(dry_run=True)),
    )
    return Settings(config_path=Path("t.toml"), database_url=db_url, broker_url="redis://unused",
                    file=FileConfig(connectors=connectors))


ADD = {"group": "g", "user": "u"}


def test_accept_validates_records_and_deduplicates(engine, db_url):
    settings = settings_for(db_url)
    first = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                            idempotency_key="k1", requested_by="me")
    assert first.enqueue and first.request["status"] == "pending" and first.request["requested_by"] == "me"
    again = requests.accept(engine, settings, connector="acme", action="group.add-member", params=dict(ADD),
                            idempotency_key="k1")
    assert not again.enqueue and again.request["id"] == first.request["id"]
    clash = requests.accept(engine, settings, connector="acme", action="group.remove-member", params=ADD,
                            idempotency_key="k1")
    assert clash.request["status"] == "rejected" and "idempotency key 'k1' was used" in clash.request["last_error"]
    cases = [
        ("nope", "group.add-member", ADD, "unknown connector 'nope'"),
        ("acme", "group.add", ADD, "unknown action 'group.add'"),
        ("acme", "group.add-member", {"group": "g"}, "user is required"),
        ("acme", "group.add-member", {**ADD, "extra": 1}, "extra is not a parameter of this action"),
        ("acme", "user.delete", {"user": "u"}, "action user.delete is not allowed for connector 'acme'"),
        ("acme", "app.grant", {"app": "a", "user": "u", "group": "g"}, "give exactly one of user and group"),
    ]
    for connector, action, params, message in cases:
        rejected = requests.accept(engine, settings, connector=connector, action=action, params=params)
        assert not rejected.enqueue and rejected.request["status"] == "rejected"
        assert message in rejected.request["last_error"], rejected.request
    assert len(requests.listing(engine, status="rejected")) == len(cases) + 1


def test_claim_finish_lease_relay_and_retry(engine, db_url):
    settings = settings_for(db_url)
    rid = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD).request["id"]
    assert requests.claim(engine, rid, "task-1", LEASE).attempts == 1
    assert requests.claim(engine, rid, "task-2", LEASE) is None            # owned, lease not run out
    assert requests.claim(engine, rid, "task-1", LEASE).attempts == 2      # the same message, redelivered
    assert requests.claim(engine, rid, "task-3", timedelta(0)).attempts == 3  # lease run out: taken over
    assert not requests.finish(engine, rid, "task-1", status="succeeded")  # no longer the owner
    assert requests.finish(engine, rid, "task-3", status="failed", error="boom")
    assert requests.get(engine, rid)["status"] == "failed"
    with pytest.raises(ValueError, match="only a failed request can be retried"):
        requests.retry(engine, requests.accept(engine, settings, connector="acme", action="group.add-member",
                                               params=ADD).request["id"], "cli:tester")
    retried = requests.retry(engine, rid, "cli:tester")
    assert (retried["status"], retried["attempts"], retried["last_error"]) == ("pending", 0, None)
    with pytest.raises(LookupError):
        requests.retry(engine, "no-such-id", "cli:tester")
    # The relay: nothing is due right after enqueueing; everything pending is due once relay_after has passed,
    # and a relayed request is not relayed again at once.
    assert requests.due_for_relay(engine, relay_after=timedelta(minutes=1), lease=LEASE) == []
    due = requests.due_for_relay(engine, relay_after=timedelta(0), lease=LEASE)
    assert rid in due
    assert requests.due_for_relay(engine, relay_after=timedelta(minutes=1), lease=LEASE) == []


def test_a_move_the_table_does_not_list_is_refused_and_writes_nothing(engine, db_url, monkeypatch):
    """claim, finish and retry name their move in models.states.REQUESTS before the update: with a table that
    lists no move at all, each raises IllegalTransition and the request stays as it was."""
    settings = settings_for(db_url)
    rid = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD).request["id"]
    no_moves = dataclasses.replace(REQUESTS, moves={state: frozenset() for state in RequestStatus})

    def refused(move: str, call) -> None:
        before = requests.get(engine, rid)
        with monkeypatch.context() as patched:
            patched.setattr(requests, "REQUESTS", no_moves)
            with pytest.raises(IllegalTransition, match=move):
                call()
        assert requests.get(engine, rid) == before

    refused("pending -> running", lambda: requests.claim(engine, rid, "task-1", LEASE))
    assert requests.claim(engine, rid, "task-1", LEASE) is not None
    refused("running -> failed", lambda: requests.finish(engine, rid, "task-1", status=RequestStatus.FAILED))
    assert requests.finish(engine, rid, "task-1", status=RequestStatus.FAILED, error="boom")
    refused("failed -> pending", lambda: requests.retry(engine, rid, "cli:tester"))
    assert requests.retry(engine, rid, "cli:tester")["status"] == RequestStatus.PENDING


def test_claim_returns_the_claimed_row_in_one_statement(engine, db_url):
    """The claim is one ``UPDATE … RETURNING``: the row as claimed, detached, on SQLite and PostgreSQL."""
    settings = settings_for(db_url)
    accepted = requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD).request
    row = requests.claim(engine, accepted["id"], "task-1", LEASE)
    assert (row.id, row.connector, row.action, row.params, row.status, row.claimed_by, row.attempts, row.dry_run) \
        == (accepted["id"], "acme", "group.add-member", ADD, "running", "task-1", 1, False)
    stored = requests.get(engine, accepted["id"])
    assert stored["started_at"] is not None and requests.view(row)["started_at"] == stored["started_at"]
    assert requests.claim(engine, "no-such-id", "task-1", LEASE) is None


def _synced(engine, settings) -> None:
    started = sync.begin(settings, engine, "acme", trigger="manual")
    for part in started.parts:
        sync.run_part(settings, engine, started.run_id, part, "acme")
    sync.finalize(engine, started.run_id)


def _retried_member_request(engine, db_url, simulator) -> tuple[Settings, str, str, str]:
    """A synced tenant whose connector tries a request 3 times, and a pending group.add-member request."""
    sim = simulator()
    settings = settings_for(db_url, sim.url, max_attempts=3)
    _synced(engine, settings)
    return settings, *_member_request(engine, settings, sim)


def _member_request(engine, settings, sim) -> tuple[str, str, str]:
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    rid = requests.accept(engine, settings, connector="acme", action="group.add-member",
                          params={"group": group["id"], "user": user}).request["id"]
    return rid, group["id"], user


def _live(engine, group_id: str, user_id: str) -> bool:
    return (group_id, user_id) in {(g.resource_id, g.principal_id)
                                   for g in queries.grants(engine, "acme", include_deleted=False)}


def _membership_changes(engine, rid: str, group_id: str, user_id: str) -> list[str]:
    return [c["change"] for c in history.changes(engine, "acme") if c["request_id"] == rid
            and (c["resource_type"], c["resource_id"], c["principal_id"]) == ("group", group_id, user_id)]


def test_a_request_taken_over_mid_run_keeps_neither_its_outcome_nor_its_write_through(engine, db_url, simulator,
                                                                                    monkeypatch):
    """The write-through and the outcome are one transaction: a worker that lost the request (its lease ran out
    and another took it over) while JumpCloud applied it records nothing; the new owner records both."""
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    _synced(engine, settings)
    rid, group_id, user_id = _member_request(engine, settings, sim)

    class TakenOverFirst(WriteThrough):
        def group_member(self, *args, **kwargs):
            assert requests.claim(engine, rid, "t-2", timedelta(0)) is not None  # another worker takes it over
            super().group_member(*args, **kwargs)

    monkeypatch.setattr(runner, "WriteThrough", TakenOverFirst)
    assert runner.execute(engine, settings, rid, "t-1").status is None
    stored = requests.get(engine, rid)
    assert (stored["status"], stored["result"]) == ("running", None)
    assert user_id in next(g for g in sim.dump()["groups"] if g["id"] == group_id)["members"]  # JumpCloud has it
    assert not _live(engine, group_id, user_id)                                                # ...we wrote nothing
    assert not [c for c in history.changes(engine, "acme") if c["request_id"] == rid]

    monkeypatch.setattr(runner, "WriteThrough", WriteThrough)
    assert runner.execute(engine, settings, rid, "t-2").status == "succeeded"  # the owner: once, both recorded
    assert requests.get(engine, rid)["result"] == {"group_id": group_id, "user_id": user_id, "changed": False}
    assert _live(engine, group_id, user_id)
    assert _membership_changes(engine, rid, group_id, user_id) == ["created"]


def test_a_database_error_in_the_write_through_rolls_it_back_and_retries(engine, db_url, simulator, monkeypatch):
    """Nothing of a failed write-through is kept: the request goes back to pending with the reason, and the retry
    writes it whole."""
    settings, rid, group_id, user_id = _retried_member_request(engine, db_url, simulator)

    class FailsAfterWriting(WriteThrough):
        def group_member(self, *args, **kwargs):
            super().group_member(*args, **kwargs)
            raise OperationalError("INSERT ...", {}, Exception("the database went away"))

    monkeypatch.setattr(runner, "WriteThrough", FailsAfterWriting)
    first = runner.execute(engine, settings, rid, "t-1")
    assert first.status == "pending" and first.retry_in > 0
    stored = requests.get(engine, rid)
    assert stored["status"] == "pending" and "the database went away" in stored["last_error"]
    assert not _live(engine, group_id, user_id)
    assert not [c for c in history.changes(engine, "acme") if c["request_id"] == rid]

    monkeypatch.setattr(runner, "WriteThrough", WriteThrough)
    assert runner.execute(engine, settings, rid, "t-2").status == "succeeded"
    assert _live(engine, group_id, user_id)
    assert _membership_changes(engine, rid, group_id, user_id) == ["created"]


def test_a_request_budget_away_sends_the_request_back_to_pending(engine, db_url, simulator, monkeypatch):
    """The connector's request budget (its Redis) not answering is transient like JumpCloud being away: the
    request waits and is tried again; it does not fail as a bug would."""
    settings, rid, group_id, user_id = _retried_member_request(engine, db_url, simulator)

    class BudgetAway(WriteThrough):
        def __init__(self, *args, **kwargs):
            raise BudgetUnavailableError("acme", 60, ConnectionError("Connection refused"))

    monkeypatch.setattr(runner, "WriteThrough", BudgetAway)
    first = runner.execute(engine, settings, rid, "t-1")
    assert first.status == "pending" and first.retry_in > 0
    assert "request budget of connector 'acme'" in requests.get(engine, rid)["last_error"]

    monkeypatch.setattr(runner, "WriteThrough", WriteThrough)
    assert runner.execute(engine, settings, rid, "t-2").status == "succeeded"
    assert _live(engine, group_id, user_id)


def test_runner_applies_writes_through_and_dry_runs(engine, db_url, simulator):
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    for name in ("acme", "dry"):
        started = sync.begin(settings, engine, name, trigger="manual")
        for part in started.parts:
            sync.run_part(settings, engine, started.run_id, part, name)
        sync.finalize(engine, started.run_id)
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u for u in dump["users"] if u["_id"] not in group["members"])

    sim.reset_stats()
    dry = requests.accept(engine, settings, connector="dry", action="group.add-member",
                          params={"group": group["name"], "user": user["_id"]}).request
    assert dry["dry_run"] is True
    outcome = runner.execute(engine, settings, dry["id"], "t-dry").status
    assert outcome == "succeeded", requests.get(engine, dry["id"])["last_error"]
    assert requests.get(engine, dry["id"])["result"] == {"group_id": group["id"], "user_id": user["_id"],
                                                         "dry_run": True}
    ghost = requests.accept(engine, settings, connector="dry", action="group.add-member",
                            params={"group": group["id"], "user": "ghost@example.org"}).request
    assert runner.execute(engine, settings, ghost["id"], "t-ghost").status == "rejected"
    assert "a dry run does not ask JumpCloud" in requests.get(engine, ghost["id"])["last_error"]
    assert sim.stats()["requests"] == 0  # a dry run does not call JumpCloud, not even to look up names
    assert user["_id"] not in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]

    real = requests.accept(engine, settings, connector="acme", action="group.add-member",
                           params={"group": group["id"], "user": user["_id"]}).request
    assert runner.execute(engine, settings, real["id"], "t-1").status == "succeeded"
    assert runner.execute(engine, settings, real["id"], "t-2").status is None  # done: a repeat does nothing
    assert user["_id"] in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
    live = {(g.resource_id, g.principal_id) for g in queries.grants(engine, "acme", include_deleted=False)}
    assert (group["id"], user["_id"]) in live
    assert requests.get(engine, real["id"])["result"] == {"group_id": group["id"], "user_id": user["_id"],
                                                          "changed": True}


def test_runner_reuses_one_client_and_registers_the_connector_once(engine, db_url, simulator, monkeypatch):
    """Per request, only the request's own work: the process's client (and its connection) and the connector's
    row id are reused."""
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    built, registered = [], []
    clients = ProcessClients(lambda connector, broker_url: built.append(make_client(connector, broker_url))
                             or built[-1])
    real_register = connectors.register_connector

    def register(session, connector):
        registered.append(connector.name)
        return real_register(session, connector)

    monkeypatch.setattr(connectors, "register_connector", register)
    dump = sim.dump()
    group = dump["groups"][0]
    users = [u["_id"] for u in dump["users"] if u["_id"] not in group["members"]][:3]
    try:
        for user in users:
            rid = requests.accept(engine, settings, connector="acme", action="group.add-member",
                                  params={"group": group["id"], "user": user}).request["id"]
            assert runner.execute(engine, settings, rid, f"t-{user}", clients=clients).status == "succeeded"
    finally:
        clients.close()
    assert len(built) == 1 and registered == ["acme"]
    assert set(users) <= set(next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"])


def test_runner_retries_transient_errors_then_fails(engine, db_url, simulator):
    sim = simulator()
    settings = settings_for(db_url, sim.url, max_attempts=2)
    dump = sim.dump()
    sim.set_faults({"rules": [{"path": "^/api/v2/usergroups/[^/]+/members$", "method": "POST", "status": 503}]})
    rid = requests.accept(engine, settings, connector="acme", action="group.add-member",
                          params={"group": dump["groups"][0]["id"], "user": dump["users"][0]["_id"]}).request["id"]
    first = runner.execute(engine, settings, rid, "t-1")
    assert first.status == "pending" and first.retry_in > 0
    assert "503" in requests.get(engine, rid)["last_error"]
    assert runner.execute(engine, settings, rid, "t-2").status == "failed"
    final = requests.get(engine, rid)
    assert final["status"] == "failed" and "gave up after 2 attempts" in final["last_error"]
    sim.clear_faults()
    requests.retry(engine, rid, "cli:tester")
    assert runner.execute(engine, settings, rid, "t-3").status == "succeeded"


def test_permanent_errors_fail_at_once(engine, db_url, simulator):
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    sim.set_faults({"rules": [{"path": "^/api/v2/usergroups/[^/]+/members$", "method": "POST", "status": 403}]})
    dump = sim.dump()
    rid = requests.accept(engine, settings, connector="acme", action="group.add-member",
                          params={"group": dump["groups"][0]["id"], "user": dump["users"][0]["_id"]}).request["id"]
    assert runner.execute(engine, settings, rid, "t-1").status == "failed"
    final = requests.get(engine, rid)
    assert final["attempts"] == 1 and "403" in final["last_error"] and TEST_API_KEY not in final["last_error"]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_runner_carries_on_when_postgres_drops_its_connections(engine, db_url, simulator):
    """What a PostgreSQL restart does to a worker's pool: every connection in it is dead. The runner's one
    checkout a request is pre-pinged, so the next request gets a new connection and runs."""
    import psycopg

    sim = simulator()
    settings = settings_for(db_url, sim.url)
    _synced(engine, settings)
    first, _, _ = _member_request(engine, settings, sim)
    assert runner.execute(engine, settings, first, "t-1").status == "succeeded"
    second, group_id, user_id = _member_request(engine, settings, sim)
    with psycopg.connect(db_url, autocommit=True) as admin:
        dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert dropped >= 1
    assert runner.execute(engine, settings, second, "t-2").status == "succeeded"
    assert _live(engine, group_id, user_id)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_no_transaction_is_open_while_jumpcloud_is_called(engine, db_url, simulator, monkeypatch):
    """The claim and the name look-ups run in autocommit mode: while a request waits for JumpCloud its connection
    is idle, not idle in a transaction (which would hold a snapshot, and a PgBouncer connection in transaction
    mode, for as long as the API takes, retries included)."""
    import psycopg

    from provisioning import actions

    states: list[list[str]] = []
    real_change = actions.graph_change

    async def observed_change(*args, **kwargs):
        with psycopg.connect(db_url, autocommit=True) as admin:
            states.append([state for (state,) in admin.execute(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'")])
        return await real_change(*args, **kwargs)

    monkeypatch.setattr(actions, "graph_change", observed_change)
    sim = simulator()
    settings = settings_for(db_url, sim.url)
    _synced(engine, settings)
    rid, group_id, user_id = _member_request(engine, settings, sim)
    assert runner.execute(engine, settings, rid, "t-1").status == "succeeded"
    assert _live(engine, group_id, user_id)
    assert states and states[0] and "idle in transaction" not in states[0], states


@pytest.mark.parametrize("field", ["idempotency_key", "requested_by", "on_behalf_of"])
def test_text_the_database_cannot_store_is_refused_before_anything_is_written(engine, db_url, field):
    """Every entry point records through ``accept``: an over-long (or empty) key, requester or on_behalf_of is a
    usage error naming the field, not a database error with SQL in it, and leaves no row."""
    settings = settings_for(db_url)
    before = len(requests.listing(engine, limit=10_000))
    for value in ("k" * 257, ""):
        with pytest.raises(InvalidRequest, match=f"{field} must be 1 to 256 characters"):
            requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                            **{field: value})
    assert len(requests.listing(engine, limit=10_000)) == before
    assert requests.accept(engine, settings, connector="acme", action="group.add-member", params=ADD,
                           **{field: "k" * 256}).request["status"] == "pending"


def test_a_write_whose_answer_was_lost_is_recorded_as_applied_confirmed_on_retry(engine, db_url, simulator):
    """JumpCloud applied the write and the answer was lost on the way (the connection dropped mid-body): the
    client sends it again and gets "already so". The outcome is this request's change, confirmed on retry:
    not ``changed: false``, and for an activation not a failure."""
    sim = simulator()
    base = settings_for(db_url, sim.url, allowed_actions=["group.add-member", "user.activate", "user.delete"])
    retrying = base.connector("acme").model_copy(update={"max_attempts": 3, "backoff_base": 0.01})
    settings = base.model_copy(update={"file": base.file.model_copy(update={"connectors": (retrying,)})})
    _synced(engine, settings)
    dump = sim.dump()
    group = dump["groups"][0]
    user = next(u["_id"] for u in dump["users"] if u["_id"] not in group["members"])
    staged = next(u for u in dump["users"] if u.get("state") == "STAGED")
    doomed = next(u["_id"] for u in dump["users"] if u["_id"] not in (user, staged["_id"]))
    sim.set_faults({"rules": [
        {"path": r"^/api/v2/usergroups/[^/]+/members$", "method": "POST", "action": "drop", "times": 1},
        {"path": r"^/api/systemusers/[^/]+/state/activate$", "method": "POST", "action": "drop", "times": 1},
        {"path": r"^/api/systemusers/[^/]+$", "method": "DELETE", "action": "drop", "times": 1},
    ]})
    cases = [("group.add-member", {"group": group["id"], "user": user}),
             ("user.activate", {"user": staged["_id"]}), ("user.delete", {"user": doomed})]
    for action, params in cases:
        rid = requests.accept(engine, settings, connector="acme", action=action, params=params).request["id"]
        assert runner.execute(engine, settings, rid, f"t-{action}").status == "succeeded", \
            requests.get(engine, rid)["last_error"]
        result = requests.get(engine, rid)["result"]
        assert (result["changed"], result.get("confirmed_on_retry")) == (True, True), (action, result)
    assert sim.stats()["by_fault"]["drop"] == 3
    assert user in next(g for g in sim.dump()["groups"] if g["id"] == group["id"])["members"]
