"""Migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from models.db import make_engine
from models.migrate import HEAD, SchemaOutOfDate, check, downgrade, head_revision, upgrade


def test_the_head_that_check_compares_first_is_alembics_head():
    """``check`` reads the revision without Alembic when it equals ``migrate.HEAD``: a new migration must move it."""
    assert HEAD == head_revision()


@pytest.fixture
def empty_engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_migrations_match_the_models(empty_engine):
    with pytest.raises(SchemaOutOfDate, match="run `jumpsync db upgrade`"):
        check(empty_engine)
    assert upgrade(empty_engine) == head_revision()
    check(empty_engine)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == [], differences


def test_upgrade_is_idempotent_and_downgrade_round_trips(empty_engine):
    upgrade(empty_engine)
    assert upgrade(empty_engine) == head_revision()
    assert downgrade(empty_engine, "base") is None
    assert upgrade(empty_engine) == head_revision()


def test_a_newer_schema_is_tolerated_an_older_one_is_not(empty_engine):
    from sqlalchemy import text

    upgrade(empty_engine)
    with empty_engine.begin() as connection:  # as if a later release had migrated the database
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    check(empty_engine)  # an older worker during a rolling upgrade keeps working
    with empty_engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    with pytest.raises(SchemaOutOfDate):
        check(empty_engine)


def test_0004_backfills_the_username_key_as_the_store_writes_it(empty_engine):
    """Users synced before 0004 are found by username afterwards: the key is what the store would write."""
    from datetime import datetime, timezone

    import sqlalchemy as sa

    from models.store import username_key

    upgrade(empty_engine, "0003")
    now = datetime.now(timezone.utc)
    connectors = sa.table("connectors", sa.column("id"), sa.column("name"), sa.column("base_url"),
                          sa.column("created_at"))
    resources = sa.table("resources", *(sa.column(c) for c in (
        "connector_id", "type", "external_id", "name", "name_key", "status", "content_hash", "first_seen_at",
        "updated_at")), sa.column("profile", sa.JSON))
    profiles = {
        "u-ascii": ("user", {"username": "Jane.Doe"}),
        "u-unicode": ("user", {"username": " STRAßE.Ölund "}),  # casefold: ß → ss; SQL lower() would not
        "u-none": ("user", {"firstname": "No Username"}),
        "u-blank": ("user", {"username": "   "}),
        "u-number": ("user", {"username": 12345}),
        "a-1": ("admin", {"username": "admin.user"}),  # only users have usernames to look up
    }
    with empty_engine.begin() as connection:
        connection.execute(sa.insert(connectors).values(id=1, name="acme", base_url="http://127.0.0.1:1",
                                                        created_at=now))
        connection.execute(sa.insert(resources), [
            {"connector_id": 1, "type": kind, "external_id": rid, "name": rid, "name_key": rid, "status": "active",
             "content_hash": "x", "first_seen_at": now, "updated_at": now, "profile": profile}
            for rid, (kind, profile) in profiles.items()])
    # more rows than one batch of the backfill, so the batching is exercised too
    with empty_engine.begin() as connection:
        connection.execute(sa.insert(resources), [
            {"connector_id": 1, "type": "user", "external_id": f"bulk-{i}", "name": "n", "name_key": "n",
             "status": "active", "content_hash": "x", "first_seen_at": now, "updated_at": now,
             "profile": {"username": f"User.{i}"}} for i in range(5200)])

    with empty_engine.begin() as connection:  # a database with statistics, which 0004 must bring up to date
        connection.execute(sa.text("ANALYZE"))

    assert upgrade(empty_engine) == head_revision()

    with empty_engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            stats = connection.execute(sa.text("SELECT idx FROM sqlite_stat1 WHERE tbl = 'resources'")).scalars()
            assert "ix_resources_lookup_username" in set(stats)
        else:
            assert connection.execute(sa.text("SELECT 1 FROM pg_stats WHERE tablename = 'resources' "
                                              "AND attname = 'username_key'")).first() is not None
        keys = dict(connection.execute(sa.text("SELECT external_id, username_key FROM resources")).all())
    assert keys["u-ascii"] == "jane.doe"
    assert keys["u-unicode"] == "strasse.ölund"
    assert {k: keys[k] for k in ("u-none", "u-blank", "u-number", "a-1")} == dict.fromkeys(
        ("u-none", "u-blank", "u-number", "a-1"))
    for rid, (kind, profile) in profiles.items():
        assert keys[rid] == username_key(kind, profile), rid
    assert [keys[f"bulk-{i}"] for i in range(5200)] == [f"user.{i}" for i in range(5200)]


def test_0005_downgrades_and_upgrades_a_database_with_data(engine):
    """The counter column is dropped and added again in place: copying ``connectors`` (a batch operation) is
    refused by the other tables' foreign keys once they have rows."""
    from sqlalchemy import select

    from models.tables import Connector
    from tests.support.databases import add_connector, add_group_members

    add_group_members(engine, add_connector(engine), "g-1", ["u-1"])
    assert downgrade(engine, "0004") == "0004"
    assert upgrade(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(select(Connector.name, Connector.data_version)).all() == [("acme", 0)]
