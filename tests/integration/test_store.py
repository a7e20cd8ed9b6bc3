"""The diff-and-upsert store, on SQLite and on a real PostgreSQL server."""

from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, Grant, Resource


def _connector(engine) -> int:
    with Session(engine) as session:
        row = Connector(name="acme", base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        return row.id


def _now(minute: int) -> datetime:
    return datetime(2026, 1, 1, 0, minute, tzinfo=timezone.utc)


def _live(engine, table, **where):
    with Session(engine) as session:
        query = select(table).where(table.deleted_at.is_(None), *[getattr(table, k) == v for k, v in where.items()])
        return session.execute(query).scalars().all()


def user(uid: str, name: str = "n", status: str = "active") -> ResourceRecord:
    return ResourceRecord(type="user", id=uid, name=name, email=f"{uid}@x.io", status=status, profile={"u": uid})


def test_resources_created_updated_deleted_undeleted(engine):
    cid = _connector(engine)
    first = ResourceWriter(engine, cid, "user", _now(0))
    first.write([user("a"), user("b"), user("c")])
    first.write([user("a")])  # repeated across pages: counted once
    assert first.delete_unseen() == 0
    assert first.counts["created"] == 3 and first.counts["repeated"] == 1

    second = ResourceWriter(engine, cid, "user", _now(1))
    second.write([user("a"), user("b", name="renamed")])
    assert second.delete_unseen() == 1  # c is gone
    assert (second.counts["updated"], second.counts["created"]) == (1, 0)
    assert {r.external_id for r in _live(engine, Resource)} == {"a", "b"}

    third = ResourceWriter(engine, cid, "user", _now(2))
    third.write([user("a"), user("b", name="renamed"), user("c")])
    third.delete_unseen()
    assert third.counts["undeleted"] == 1 and third.counts["rows_written"] == 1
    rows = {r.external_id: r for r in _live(engine, Resource)}
    assert set(rows) == {"a", "b", "c"} and rows["b"].name == "renamed"


def test_unchanged_resync_writes_no_rows(engine):
    cid = _connector(engine)
    for minute in range(2):
        writer = ResourceWriter(engine, cid, "user", _now(minute))
        writer.write([user(str(i)) for i in range(300)])
        writer.delete_unseen()
    assert writer.counts["rows_written"] == 0 and writer.counts["seen"] == 300
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Resource)).scalar_one() == 300


def member(group: str, uid: str) -> GrantRecord:
    return GrantRecord("group", group, "member", "user", uid)


def test_grants_diff_per_scope_and_unseen_scopes(engine):
    cid = _connector(engine)
    first = GrantWriter(engine, cid, "group", "group", _now(0))
    first.write_scopes({"g1": [member("g1", "a"), member("g1", "b")], "g2": [member("g2", "a")]})
    first.delete_unseen_scopes()
    assert first.counts["grants_created"] == 3

    second = GrantWriter(engine, cid, "group", "group", _now(1))
    second.write_scopes({"g1": [member("g1", "b"), member("g1", "c")]})  # a left g1; g2 is gone
    assert second.delete_unseen_scopes() == 2  # a left g1, and g2 is gone
    live = {(g.resource_id, g.principal_id) for g in _live(engine, Grant)}
    assert live == {("g1", "b"), ("g1", "c")}
    assert (second.counts["grants_created"], second.counts["grants_deleted"]) == (1, 2)

    third = GrantWriter(engine, cid, "group", "group", _now(2))
    third.write_scopes({"g1": [member("g1", "b"), member("g1", "c")], "g2": [member("g2", "a")]})
    third.delete_unseen_scopes()
    assert third.counts["grants_undeleted"] == 1 and third.counts["rows_written"] == 1


def test_grant_sources_do_not_delete_each_other(engine):
    cid = _connector(engine)
    direct = GrantWriter(engine, cid, "app", "app", _now(0))
    direct.write_scopes({"p1": [GrantRecord("app", "p1", "access", "user", "u1")]})
    via = GrantWriter(engine, cid, "app", "app_via_group", _now(0))
    via.write_scopes({"p1": [GrantRecord("app", "p1", "access", "user", "u1", via="g1")]})
    again = GrantWriter(engine, cid, "app", "app_via_group", _now(1))
    again.write_scopes({"p1": []})
    again.delete_unseen_scopes()
    live = {(g.principal_id, g.via) for g in _live(engine, Grant)}
    assert live == {("u1", "")}  # the direct grant survives the via-group part's deletions
