"""The diff-and-upsert store, on SQLite and on a real PostgreSQL server."""

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models import bulk, store
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, Grant, Resource
from tests.support.databases import add_connector


@pytest.fixture(autouse=True, params=["executemany", "copy"])
def upsert_path(request, monkeypatch):
    """Every test through both PostgreSQL upsert paths (SQLite has only the executemany)."""
    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 1 if request.param == "copy" else 10**9)
    return request.param


def _connector(engine) -> int:
    return add_connector(engine)


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


def _apps_and_groups(engine, cid, minute, apps, bindings, members):
    """Store what the app and group parts would: live apps, app→group bindings, group memberships."""
    now = _now(minute)
    app_writer = ResourceWriter(engine, cid, "app", now)
    app_writer.write([ResourceRecord(type="app", id=a, name=a) for a in apps])
    app_writer.delete_unseen()
    app_grants = GrantWriter(engine, cid, "app", "app", now)
    app_grants.write_scopes({a: [GrantRecord("app", a, "access", "group", g) for g in bindings.get(a, [])]
                             for a in apps})
    app_grants.delete_unseen_scopes()
    group_grants = GrantWriter(engine, cid, "group", "group", now)
    group_grants.write_scopes({g: [GrantRecord("group", g, "member", "user", u) for u in users]
                               for g, users in members.items()})
    group_grants.delete_unseen_scopes()


def _via_group(engine) -> set[tuple[str, str, str]]:
    return {(g.resource_id, g.principal_id, g.via) for g in _live(engine, Grant, source="app_via_group")}


def test_access_through_groups_is_derived_and_diffed_in_the_database(engine):
    from models.tables import Change
    from pipeline.derived import derive_app_via_group_part

    cid = _connector(engine)
    _apps_and_groups(engine, cid, 0, ["p1", "p2", "p3"], {"p1": ["g1", "g2"], "p2": ["g3"], "p3": ["g1"]},
                     {"g1": ["u1", "u2"], "g2": ["u2"], "g3": [], "g4": ["u4"]})
    counts = derive_app_via_group_part(engine, cid, None)
    assert _via_group(engine) == {("p1", "u1", "g1"), ("p1", "u2", "g1"), ("p1", "u2", "g2"),
                                  ("p3", "u1", "g1"), ("p3", "u2", "g1")}
    assert counts["grants_created"] == 5 and counts["rows_written"] == 5
    assert derive_app_via_group_part(engine, cid, None)["rows_written"] == 0  # nothing changed: nothing written

    # u1 leaves g1, g4 is bound to p2, p3 is deleted, g2 is unbound from p1.
    _apps_and_groups(engine, cid, 1, ["p1", "p2"], {"p1": ["g1"], "p2": ["g3", "g4"]},
                     {"g1": ["u2"], "g2": ["u2"], "g3": [], "g4": ["u4"]})
    counts = derive_app_via_group_part(engine, cid, None)
    assert _via_group(engine) == {("p1", "u2", "g1"), ("p2", "u4", "g4")}
    assert (counts["grants_created"], counts["grants_deleted"]) == (1, 4)

    # u1 comes back to g1: the old row is undeleted, not duplicated.
    _apps_and_groups(engine, cid, 2, ["p1", "p2"], {"p1": ["g1"], "p2": ["g3", "g4"]},
                     {"g1": ["u1", "u2"], "g2": ["u2"], "g3": [], "g4": ["u4"]})
    counts = derive_app_via_group_part(engine, cid, None)
    assert counts["grants_undeleted"] == 1 and ("p1", "u1", "g1") in _via_group(engine)
    with Session(engine) as session:
        rows = session.execute(select(func.count()).select_from(Grant).where(
            Grant.source == "app_via_group", Grant.resource_id == "p1", Grant.principal_id == "u1",
            Grant.via == "g1")).scalar_one()
        history = {(c.change, c.resource_id, c.principal_id, c.via) for c in session.execute(
            select(Change).where(Change.subject == "grant", Change.via.is_not(None), Change.via != "")).scalars()}
    assert rows == 1
    assert history == {("created", "p2", "u4", "g4"), ("deleted", "p1", "u1", "g1"), ("deleted", "p1", "u2", "g2"),
                       ("deleted", "p3", "u1", "g1"), ("deleted", "p3", "u2", "g1"), ("undeleted", "p1", "u1", "g1")}


def test_bulk_paths_store_exactly_what_sqlalchemy_stores(engine):
    """The fast paths (DBAPI executemany on SQLite, COPY on PostgreSQL) store the same raw values as a plain
    SQLAlchemy insert: timestamps in the same format, JSON the same, NULL where SQLAlchemy puts NULL."""
    from sqlalchemy import insert, text

    cid = _connector(engine)
    with Session(engine) as session:
        other = Connector(name="plain", base_url="https://console.jumpcloud.com")
        session.add(other)
        session.commit()
        plain_id = other.id
    now = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    records = [user("a"), ResourceRecord(type="user", id="b", name="Zoë \u202e", email=None, status=None,
                                         profile={"attributes": [{"name": "x", "value": None}], "n": 1})]
    with Session(engine) as session:
        store.upsert_resource_rows(session, [store.resource_row(cid, r, now) for r in records])
        session.execute(insert(Resource.__table__), [store.resource_row(plain_id, r, now) for r in records])
        session.commit()
        raw = session.execute(text(
            "SELECT connector_id, external_id, name, email, name_key, email_key, status, profile, content_hash, "
            "first_seen_at, updated_at, deleted_at FROM resources ORDER BY external_id, connector_id")).all()
    fast = [tuple(r)[1:] for r in raw if r[0] == cid]
    plain = [tuple(r)[1:] for r in raw if r[0] == plain_id]
    assert len(fast) == 2 and fast == plain


def test_statistics_are_refreshed_on_postgresql_after_a_bulk_load(engine):
    from sqlalchemy import text

    from pipeline.derived import ANALYZE_MIN_ROWS, refresh_statistics

    assert refresh_statistics(engine, ANALYZE_MIN_ROWS - 1) is False
    refreshed = refresh_statistics(engine, ANALYZE_MIN_ROWS)
    assert refreshed is (engine.dialect.name == "postgresql")
    if refreshed:
        with engine.connect() as connection:
            analyzed = connection.execute(text(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'grants'")).scalar_one()
        assert analyzed


def test_sqlite_connections_are_set_up_for_several_writers_and_bulk_writes(tmp_path):
    """WAL with a busy timeout (several worker processes write), and checkpoints every 10,000 pages rather than
    every 1,000 (models/db.py: each checkpoint syncs the file, so fewer of them speed up bulk writes)."""
    from models.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as connection:
        settings = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "synchronous", "wal_autocheckpoint", "busy_timeout", "foreign_keys")}
    engine.dispose()
    assert settings == {"journal_mode": "wal", "synchronous": 1, "wal_autocheckpoint": 10000, "busy_timeout": 60000,
                        "foreign_keys": 1}


def _history_count(engine) -> int:
    from models.tables import Change

    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(Change)).scalar_one()


def test_an_incremental_writer_is_never_the_baseline(engine):
    """The first write of a type records no history, unless it applies on top of a full sync (incremental)."""
    cid = _connector(engine)
    first = GrantWriter(engine, cid, "group", "group", _now(0))
    assert first.baseline
    first.write_scopes({"g1": [member("g1", "a")]})
    assert _history_count(engine) == 0
    resources = ResourceWriter(engine, cid, "admin", _now(1), incremental=True)
    grants = GrantWriter(engine, cid, "app", "app", _now(1), incremental=True)
    assert not resources.baseline and not grants.baseline
    resources.write([ResourceRecord(type="admin", id="x", name="x")])
    grants.write_scopes({"p1": [GrantRecord("app", "p1", "access", "user", "a")]})
    assert _history_count(engine) == 2


def test_writers_counts_change_only_through_their_methods(engine):
    cid = _connector(engine)
    resources = ResourceWriter(engine, cid, "user", _now(0))
    resources.write([user("a")])
    resources.counts["created"] += 5  # a copy: the writer's own counts are unchanged
    resources.note_inconsistent_listing(3)
    assert dict(resources.counts) == {"seen": 1, "created": 1, "rows_written": 1, "inconsistent_pages": 3,
                                      "deletions_deferred": 1, "baseline": 1}  # the first write of the type
    grants = GrantWriter(engine, cid, "group", "group", _now(0))
    grants.record_bulk_insert(0)  # an INSERT ... SELECT that inserted nothing still shows in the counts
    assert dict(grants.counts) == {"grants_created": 0, "rows_written": 0}
