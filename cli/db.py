"""``jumpsync db ...``: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

db_app = typer.Typer(help="Database schema: upgrade, current revision.", no_args_is_help=True)
console = Console()


def _engine():
    from models.db import get_engine
    from worker import runtime

    return get_engine(runtime.settings().database_url)


@db_app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database to the latest schema (run once before starting new workers)."""
    from models import migrate

    at = migrate.upgrade(_engine(), revision)
    console.print(f"database schema at revision {at}")


@db_app.command()
def downgrade(revision: str = typer.Argument(..., help='Target revision ("base" empties the schema).')) -> None:
    """Take the schema back to an older revision, to roll back an upgrade."""
    from models import migrate

    at = migrate.downgrade(_engine(), revision)
    console.print(f"database schema at revision {at or 'base'}")


@db_app.command()
def current() -> None:
    """Print the schema's revision and whether it is the one this version needs; exit 1 if not."""
    from models import migrate
    from models.db import missing_sqlite_file

    engine = _engine()
    missing = missing_sqlite_file(engine.url)
    at, head = None if missing else migrate.current_revision(engine), migrate.head_revision()
    console.print(f"current: {at or 'none'}{f' (no database yet: {missing})' if missing else ''}; needed: {head}")
    raise typer.Exit(0 if at == head else 1)
