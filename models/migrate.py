"""Schema migrations (Alembic): ``jumpsync db upgrade`` runs them; processes check the revision at start.

Workers never migrate on their own: several of them starting at once would race. A deployment runs
``jumpsync db upgrade`` once before starting workers (compose one-shot service, Kubernetes init job,
systemd ExecStartPre); ``jumpsync up`` does it itself. On PostgreSQL the upgrade holds an advisory lock, so
two upgrades started by mistake run one after the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x6A756D70  # "jump"

#: The newest revision in migrations/versions (a test keeps it equal to Alembic's head). ``check`` compares
#: the database with it before loading Alembic, so that no CLI command pays for importing Alembic and reading
#: the scripts when the schema is current.
HEAD = "0014"


class SchemaOutOfDate(RuntimeError):
    pass


class NoDatabase(SchemaOutOfDate):
    """The configured SQLite file does not exist: nothing was set up here yet (the same remedy as an old schema)."""


def alembic_config(connection=None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migrations have no head revision")
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _at_head(engine: Engine) -> bool:
    """Whether the database is at ``HEAD``, read with SQLAlchemy alone (no table yet, or no database: False,
    and ``check`` finds out what is wrong the slow way)."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    except SQLAlchemyError:
        return False


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision it is at afterwards."""
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        command.upgrade(alembic_config(connection), revision)
    return current_revision(engine)


def check(engine: Engine) -> None:
    """Raise SchemaOutOfDate, saying what to run, when the schema is older than this code needs.

    A revision this code does not know is newer: a rolling upgrade migrated the database while older workers
    still run. Migrations are written to stay compatible with the previous release, so that is allowed.
    A SQLite file that does not exist is NoDatabase, and is not created: checking writes nothing.
    """
    from models.db import missing_sqlite_file  # here: cli.main imports this module for SchemaOutOfDate alone

    missing = missing_sqlite_file(engine.url)
    if missing is not None:
        raise NoDatabase(f"no database yet: {missing} does not exist; run `jumpsync db upgrade` to create it "
                         "(or `jumpsync up` to run everything here)")
    if _at_head(engine):
        return
    from alembic.script import ScriptDirectory

    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        log.warning("database schema %s is newer than this version of jumpsync (%s): finish the upgrade", current, head)
        return
    raise SchemaOutOfDate(f"the database schema is at revision {current or 'none (empty database)'} but this "
                          f"version of jumpsync needs {head}: run `jumpsync db upgrade`")


def downgrade(engine: Engine, revision: str) -> str | None:
    """Take the schema back to ``revision`` ("base" empties it). For rolling back an upgrade."""
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
    return current_revision(engine)
