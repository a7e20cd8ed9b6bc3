"""Migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from models.db import make_engine
from models.migrate import SchemaOutOfDate, check, downgrade, head_revision, upgrade


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
