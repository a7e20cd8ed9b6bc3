"""``jumpsync status`` at an MSP's scale: its queries do not grow with the connectors (models.queries.status,
access.snapshots.rendering_states)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, insert

from models import queries
from models.tables import Connector, Grant, Resource, SyncPart, SyncRun, table_of, utcnow


def _connectors(engine, first: int, count: int) -> None:
    """``count`` synced connectors, each with two runs of two parts, a user and a membership."""
    now = utcnow()
    with engine.begin() as connection:
        for i in range(first, first + count):
            cid = connection.execute(insert(table_of(Connector)).values(
                name=f"org-{i:03d}", base_url="https://console.jumpcloud.com")).inserted_primary_key[0]
            for k in (2, 1):
                rid = connection.execute(insert(table_of(SyncRun)).values(
                    connector_id=cid, status="succeeded", trigger="schedule", started_at=now - timedelta(hours=k),
                    finished_at=now - timedelta(hours=k, seconds=-2))).inserted_primary_key[0]
                connection.execute(insert(table_of(SyncPart)), [
                    {"run_id": rid, "name": name, "phase": "fetch", "status": "succeeded", "requests": k, "counts": {}}
                    for name in ("user", "group")])
            connection.execute(insert(table_of(Resource)).values(
                connector_id=cid, type="user", external_id="u1", name="Ann", content_hash="h", profile={}))
            connection.execute(insert(table_of(Grant)).values(
                connector_id=cid, resource_type="group", resource_id="g1", entitlement="member", principal_type="user",
                principal_id="u1", via="", source="group"))


def _statements(engine, read) -> tuple[int, object]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        found = read()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements), found


def test_status_reads_every_connector_in_the_same_few_queries(engine):
    _connectors(engine, 0, 3)
    few, found = _statements(engine, lambda: queries.status(engine, ["org-000", "not-synced"]))
    assert len(found) == 4 and found[0].connector == "not-synced" and not found[0].synced  # sorted by name
    _connectors(engine, 3, 27)
    many, found = _statements(engine, lambda: queries.status(engine, ["org-000", "not-synced"]))
    assert many == few <= 10, (few, many)
    org = next(s for s in found if s.connector == "org-007")
    assert org.synced and org.resources == {"user": 1} and org.grants == 1
    assert org.last_run is not None and [p.requests for p in org.last_run.parts] == [1, 1]  # the later run's
    assert org.last_success_at is not None and org.last_run.finished_at is not None


def test_the_renderings_of_many_connectors_are_read_at_once(engine):
    """``status`` shows each connector's stored rendering: the connectors and the headers are read once for all,
    and an organisation never synced (an MSP key's new ones) costs nothing, not even a "did you mean" over a
    thousand names."""
    from access.snapshots import rendering_states

    _connectors(engine, 0, 3)
    names = [f"org-{i:03d}" for i in range(3)] + [f"acme-new-{i}" for i in range(50)]
    few, _ = _statements(engine, lambda: rendering_states(engine, names[:4]))
    many, found = _statements(engine, lambda: rendering_states(engine, names))
    assert many == few <= 4, (few, many)
    assert found == dict.fromkeys(names)  # none rendered yet


def test_rendered_connectors_cost_no_query_each(engine):
    """Once every organisation's report and export are rendered, ``status`` still reads whether each is current
    in the same few queries (the data versions of all at once), and says so per connector."""
    from access import snapshots
    from models.dataversion import bump_data_version

    names = [f"org-{i:03d}" for i in range(30)]
    _connectors(engine, 0, 30)
    for name in names[:3]:
        assert snapshots.refresh(engine, name, force=True).outcome == "rendered"
    few, _ = _statements(engine, lambda: snapshots.rendering_states(engine, names))
    for name in names[3:]:
        snapshots.refresh(engine, name, force=True)
    with engine.begin() as connection:  # org-005's data changed outside a run: its rendering is stale
        bump_data_version(connection, connection.execute(
            table_of(Connector).select().where(table_of(Connector).c.name == "org-005")).first().id)
    many, found = _statements(engine, lambda: snapshots.rendering_states(engine, names))
    assert many == few <= 6, (few, many)
    assert [name for name, state in found.items() if not state["current"]] == ["org-005"]
