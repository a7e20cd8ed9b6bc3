"""Writing what a sync part saw: diff against the database, bulk-upsert only what changed, mark the rest deleted.

A part knows, when it ends successfully, everything JumpCloud holds of its type; so whatever it did not see is
gone. Resources are compared by content hash, grants by key, so a re-sync of an unchanged org writes no rows,
and a row that comes back loses its ``deleted_at``. Writes are ``INSERT ... ON CONFLICT DO UPDATE`` in bulk, so
a part run twice (a redelivered task) converges on the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, Table, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models import history
from models.dataversion import commit_write
from models.names import lookup_key
from models.tables import Grant, Resource

_CHUNK = 500


def chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: From this many rows, PostgreSQL upserts go through COPY into a staging table (1.4–1.6× the executemany rate
#: in the benchmark); fewer are not worth the extra round trips.
COPY_MIN_ROWS = 200


def dialect_insert(dialect: str, table: Table):
    """``INSERT`` into ``table`` in the dialect's own form, which has ``ON CONFLICT`` (SQLite, PostgreSQL)."""
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect](table)


@lru_cache(maxsize=64)
def _upsert_statement(dialect: str, table: Table, keys: tuple[str, ...], update_columns: tuple[str, ...]):
    """Built once per table and dialect: building it (``excluded`` columns) costs more than a one-row upsert."""
    statement = dialect_insert(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={column: statement.excluded[column] for column in update_columns})


def bulk_upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: Sequence[str],
                update_columns: Sequence[str]) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update_columns`` for many rows (no two with the same keys).

    On PostgreSQL, a batch of ``COPY_MIN_ROWS`` or more is copied into a temporary staging table and upserted
    by one ``INSERT ... SELECT``; otherwise an executemany of the statement, in chunks.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        _copy_upsert(session, table, rows, keys, update_columns)
        return
    statement = _upsert_statement(dialect, table, tuple(keys), tuple(update_columns))
    if dialect == "sqlite":
        _sqlite_executemany(session, statement, table, rows)
        return
    for chunk in chunks(rows):
        session.execute(statement, list(chunk))


def _sqlite_executemany(session: Session, statement, table: Table, rows: list[dict[str, Any]]) -> None:
    """SQLite: the statement compiled once by SQLAlchemy, its parameters converted by the columns' own bind
    processors, one DBAPI ``executemany``.

    SQLAlchemy's per-row parameter building is general (any statement, any parameter) and was a quarter of
    the writers' time; the store's rows are plain dicts of known columns."""
    dialect = session.get_bind().dialect
    sql, names = _sqlite_plan(statement, tuple(rows[0]), dialect)
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, _bound(rows, _bind_processors(table, names, dialect)))
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _sqlite_plan(statement, columns: tuple[str, ...], dialect) -> tuple[str, tuple[str, ...]]:
    """The SQL of ``statement`` for these columns, and the names of its parameters, in order."""
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    return str(compiled), tuple(compiled.positiontup)


@lru_cache(maxsize=64)
def _bind_processors(table: Table, names: tuple[str, ...], dialect) -> tuple:
    """(name, the column's bind processor or None) for each name: what SQLAlchemy applies to a parameter."""
    return tuple((name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names)


def _bound(rows: list[dict[str, Any]], processors: tuple) -> list[tuple]:
    """Each row's values in the processors' order, converted as SQLAlchemy converts them, so that the fast paths
    store exactly what an ordinary insert stores."""
    return [tuple(row[name] if process is None else process(row[name]) for name, process in processors)
            for row in rows]


def _copy_upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: Sequence[str],
                 update_columns: Sequence[str]) -> None:
    """PostgreSQL: COPY the rows into a per-connection staging table (emptied at commit), then one upsert.

    Runs in the session's transaction, so it commits or rolls back with the rest of the batch."""
    columns = tuple(rows[0])
    staging = f"staging_{table.name}"
    names = ", ".join(columns)
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in update_columns)
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                       f"SELECT {names} FROM {table.name} WITH NO DATA")
        with cursor.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            for values in _bound(rows, _bind_processors(table, columns, session.get_bind().dialect)):
                copy.write_row(values)
        cursor.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} "
                       f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
        cursor.execute(f"TRUNCATE {staging}")
    finally:
        cursor.close()


def username_key(resource_type: str, profile: dict | None) -> str | None:
    """A user's ``profile["username"]`` as ``lookup_key`` folds it, for the username index; None for the rest."""
    username = (profile or {}).get("username") if resource_type == "user" else None
    return lookup_key(username) if isinstance(username, str) and username.strip() else None


def resource_row(connector_id: int, record: ResourceRecord, now: datetime, digest: str | None = None) -> dict:
    return {
        "connector_id": connector_id, "type": record.type, "external_id": record.id, "name": record.name,
        "email": record.email, "status": record.status, "profile": record.profile,
        "name_key": lookup_key(record.name), "email_key": lookup_key(record.email) if record.email else None,
        "username_key": username_key(record.type, record.profile),
        "content_hash": digest or record.content_hash(), "first_seen_at": now, "updated_at": now, "deleted_at": None,
    }


RESOURCE_KEY = ("connector_id", "type", "external_id")
RESOURCE_UPDATE = ("name", "email", "name_key", "email_key", "username_key", "status", "profile", "content_hash",
                   "updated_at", "deleted_at")


def upsert_resource_rows(session: Session, rows: list[dict]) -> None:
    bulk_upsert(session, Resource.__table__, rows, RESOURCE_KEY, RESOURCE_UPDATE)


def grant_row(connector_id: int, grant: GrantRecord, source: str, now: datetime) -> dict:
    return {"connector_id": connector_id, "resource_type": grant.resource_type, "resource_id": grant.resource_id,
            "entitlement": grant.entitlement, "principal_type": grant.principal_type,
            "principal_id": grant.principal_id, "via": grant.via, "source": source, "first_seen_at": now,
            "deleted_at": None}


GRANT_KEY = ("connector_id", "resource_type", "resource_id", "entitlement", "principal_type", "principal_id", "via")


def upsert_grant_rows(session: Session, rows: list[dict]) -> None:
    """Insert grants, or bring back deleted ones; a live grant is left as it is."""
    bulk_upsert(session, Grant.__table__, rows, GRANT_KEY, ("source", "deleted_at"))


class ResourceWriter:
    """Writes the resources of one type of one connector, as one part sees them."""

    def __init__(self, engine: Engine, connector_id: int, resource_type: str, now: datetime,
                 run_id: int | None = None, only: Iterable[str] | None = None) -> None:
        """``only``: the ids this writer will write or delete (an incremental refresh), so that only their rows
        are read; a part reads every row of its type, to find what it did not see."""
        self.engine = engine
        self.connector_id = connector_id
        self.resource_type = resource_type
        self.now = now
        self.run_id = run_id
        self.seen: set[str] = set()
        self.counts: Counter[str] = Counter()
        table = Resource.__table__
        query = select(table.c.external_id, table.c.content_hash, table.c.deleted_at).where(
            table.c.connector_id == connector_id, table.c.type == resource_type)
        #: external id -> (content hash, deleted?)
        self.existing: dict[str, tuple[str, bool]] = {}
        with Session(engine) as session:
            for ids in ([None] if only is None else chunks(sorted(set(only)))):
                rows = session.execute(query if ids is None else query.where(table.c.external_id.in_(ids)))
                self.existing.update((r[0], (r[1], r[2] is not None)) for r in rows)
        #: The first sync of a type is the baseline: it records no history (everything would be "created").
        self.baseline = only is None and not self.existing

    def write(self, records: Iterable[ResourceRecord]) -> None:
        rows, changed = [], []
        for record in records:
            if record.id in self.seen:  # listed twice because the data moved between pages
                self.counts["repeated"] += 1
                continue
            self.seen.add(record.id)
            self.counts["seen"] += 1
            digest = record.content_hash()
            before = self.existing.get(record.id)
            if before is None:
                kind = "created"
            elif before[1]:
                kind = "undeleted"
            elif before[0] != digest:
                kind = "updated"
            else:
                continue
            self.counts[kind] += 1
            rows.append(resource_row(self.connector_id, record, self.now, digest))
            changed.append((kind, record))
        if rows:
            with Session(self.engine) as session:
                if not self.baseline:
                    history.record(session, self._history(session, changed))
                upsert_resource_rows(session, rows)
                commit_write(session, self.connector_id, self.run_id)
            self.counts["rows_written"] += len(rows)

    def _history(self, session: Session, changed: list[tuple[str, ResourceRecord]]) -> list[dict]:
        """History rows for a batch, with the fields that changed (read before the upsert overwrites them)."""
        table = Resource.__table__
        old = {}
        ids = [record.id for kind, record in changed if kind != "created"]
        for chunk in chunks(ids):
            for row in session.execute(select(table.c.external_id, table.c.name, table.c.email, table.c.status,
                                              table.c.profile).where(
                    table.c.connector_id == self.connector_id, table.c.type == self.resource_type,
                    table.c.external_id.in_(chunk))).mappings():
                old[row["external_id"]] = row
        return [history.resource_change(
            self.connector_id, kind, self.resource_type, record.id, self.now, run_id=self.run_id,
            fields=history.field_changes(old[record.id], record) if record.id in old else None)
            for kind, record in changed]

    def live_count(self) -> int:
        return sum(1 for _, deleted in self.existing.values() if not deleted)

    def unseen(self) -> list[str]:
        """Live rows that this part did not see: what disappeared from JumpCloud."""
        return [rid for rid, (_, deleted) in self.existing.items() if not deleted and rid not in self.seen]

    def delete_unseen(self) -> int:
        return self.delete(self.unseen())

    def delete(self, ids: Iterable[str]) -> int:
        """Mark these live rows deleted, with their history."""
        gone = [rid for rid in ids if rid in self.existing and not self.existing[rid][1]]
        if not gone:
            return 0
        table = Resource.__table__
        with Session(self.engine) as session:
            history.record(session, [history.resource_change(self.connector_id, "deleted", self.resource_type, rid,
                                                             self.now, run_id=self.run_id) for rid in gone])
            for chunk in chunks(gone):
                session.execute(update(table).where(
                    table.c.connector_id == self.connector_id, table.c.type == self.resource_type,
                    table.c.external_id.in_(chunk), table.c.deleted_at.is_(None)).values(deleted_at=self.now))
            commit_write(session, self.connector_id, self.run_id)
        self.counts["deleted"] += len(gone)
        self.counts["rows_written"] += len(gone)
        return len(gone)


class GrantWriter:
    """Writes the grants one source (a part) owns, one resource (a "scope") at a time.

    Each scope written is the complete set of grants on that resource: what is new is inserted and what came
    back is undeleted at once; what is missing is only noted (``doomed``), and marked deleted by
    ``apply_deletions`` once the part knows its listing was complete and the deletion safety valve agrees.
    Scopes never written by the end of the part belong to resources that are gone (``plan_unseen_scopes``).
    """

    def __init__(self, engine: Engine, connector_id: int, resource_type: str, source: str, now: datetime,
                 run_id: int | None = None) -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.resource_type = resource_type
        self.source = source
        self.now = now
        self.run_id = run_id
        table = Grant.__table__
        with Session(engine) as session:  # the first sync of a source is the baseline: no history
            self.baseline = session.execute(select(table.c.id).where(self._where(table)).limit(1)).first() is None
        self.seen_scopes: set[str] = set()
        self.counts: Counter[str] = Counter()
        #: ids of live grant rows this part found gone, not yet marked deleted
        self.doomed: list[int] = []

    def _where(self, table: Table):
        return and_(table.c.connector_id == self.connector_id, table.c.source == self.source)

    def write_scopes(self, scopes: dict[str, list[GrantRecord]]) -> None:
        if not scopes:
            return
        table = Grant.__table__
        fresh = {rid: rid not in self.seen_scopes for rid in scopes}
        self.seen_scopes.update(scopes)
        # On the baseline (no row of this source existed when the part began), a scope not yet written in this
        # part has no rows to diff against: skip the read. It matters on a first sync into PostgreSQL, whose
        # planner, without statistics for a table that grows by the batch, scans the whole table each time.
        lookup = [rid for rid in scopes if not (self.baseline and fresh[rid])]
        with Session(self.engine) as session:
            existing = self._stored(session, table.c.resource_id, lookup)
            wanted, changed = self._diff(existing, (grant for grants in scopes.values() for grant in grants))
            self.counts["grants_seen"] += len(wanted)
            # A scope written a second time in the same part (a listing that repeated a resource) only adds.
            gone = [row_id for key, (row_id, deleted) in existing.items()
                    if not deleted and key not in wanted and fresh[key[0]]]
            if changed:
                self._insert(session, changed)
                commit_write(session, self.connector_id, self.run_id)
        self.doomed.extend(gone)

    def _stored(self, session: Session, column, ids: Sequence[str], *conditions) -> dict[tuple, tuple[int, bool]]:
        """This source's rows whose ``column`` is one of ``ids``: (resource id, *``GrantRecord.key``) -> (row id,
        deleted?)."""
        table = Grant.__table__
        existing: dict[tuple, tuple[int, bool]] = {}
        for chunk in chunks(ids):
            for row in session.execute(select(
                    table.c.id, table.c.resource_id, table.c.entitlement, table.c.principal_type,
                    table.c.principal_id, table.c.via, table.c.deleted_at,
            ).where(self._where(table), *conditions, column.in_(chunk))):
                existing[(row.resource_id, row.entitlement, row.principal_type, row.principal_id, row.via)] = (
                    row.id, row.deleted_at is not None)
        return existing

    @staticmethod
    def _diff(existing: dict[tuple, tuple[int, bool]], grants: Iterable[GrantRecord]
              ) -> tuple[set[tuple], list[tuple[str, GrantRecord]]]:
        """The keys of ``grants`` (each once), and those of them that are new (``created``) or deleted and back
        (``undeleted``)."""
        wanted: set[tuple] = set()
        changed: list[tuple[str, GrantRecord]] = []
        for grant in grants:
            key = (grant.resource_id, *grant.key)
            if key in wanted:
                continue
            wanted.add(key)
            before = existing.get(key)
            if before is None or before[1]:
                changed.append(("created" if before is None else "undeleted", grant))
        return wanted, changed

    def insert_changes(self, changed: Iterable[tuple[str, GrantRecord]], batch: int = 5000) -> None:
        """Insert (``created``) or bring back (``undeleted``) grants already known to be new or back, e.g.
        from a diff computed in SQL; with their history, a transaction per ``batch``."""
        changed = list(changed)
        with Session(self.engine) as session:
            for chunk in chunks(changed, batch):
                self._insert(session, chunk)
                commit_write(session, self.connector_id, self.run_id)

    def _insert(self, session: Session, changed: Sequence[tuple[str, GrantRecord]]) -> None:
        for kind, _ in changed:
            self.counts[f"grants_{kind}"] += 1
        if not self.baseline:
            history.record(session, [history.grant_change(self.connector_id, kind, grant, self.now,
                                                          run_id=self.run_id) for kind, grant in changed])
        upsert_grant_rows(session, [grant_row(self.connector_id, grant, self.source, self.now)
                                    for _, grant in changed])
        self.counts["rows_written"] += len(changed)

    def write_principal_scopes(self, principal_type: str, scopes: dict[str, list[GrantRecord]],
                               removable: set[tuple[str, str]] | None = None) -> None:
        """Like ``write_scopes``, from the principal's side: each scope is every grant of this source that one
        principal holds (a user's memberships, a user's or group's app bindings), read back by an incremental
        refresh. What is new or back is written at once; what the principal no longer holds is noted in
        ``doomed`` for ``apply_deletions``, if ``removable`` (principal id, resource id) pairs include it (the
        edges that events named: an absence alone deletes nothing)."""
        if not scopes:
            return
        table = Grant.__table__
        with Session(self.engine) as session:
            existing = self._stored(session, table.c.principal_id, sorted(scopes),
                                    table.c.resource_type == self.resource_type,
                                    table.c.principal_type == principal_type)
            wanted, changed = self._diff(existing, (grant for grants in scopes.values() for grant in grants))
            self.counts["grants_seen"] += len(wanted)
            if changed:
                self._insert(session, changed)
                commit_write(session, self.connector_id, self.run_id)
        self.doomed.extend(row_id for key, (row_id, deleted) in existing.items() if not deleted and key not in wanted
                           and (removable is None or (key[3], key[0]) in removable))

    def plan_deletion(self, *, resource_ids: Iterable[str] = (), principal_ids: Iterable[str] = ()) -> None:
        """Note as gone every live grant of this source on these resources or held by these principals (the
        objects were deleted in JumpCloud, and their edges with them)."""
        table = Grant.__table__
        live = and_(self._where(table), table.c.deleted_at.is_(None))
        with Session(self.engine) as session:
            for column, ids in ((table.c.resource_id, resource_ids), (table.c.principal_id, principal_ids)):
                for chunk in chunks(sorted(set(ids))):
                    self.doomed.extend(session.execute(select(table.c.id).where(live, column.in_(chunk))).scalars())

    def plan_unseen_scopes(self) -> None:
        """Note as gone the live grants on resources this part never wrote a scope for."""
        table = Grant.__table__
        live = and_(self._where(table), table.c.deleted_at.is_(None))
        with Session(self.engine) as session:  # the resources first (few), then only the grants of the unseen
            scopes = session.execute(select(table.c.resource_id).where(live).distinct()).scalars()
            unseen = [resource_id for resource_id in scopes if resource_id not in self.seen_scopes]
            for chunk in chunks(unseen):
                self.doomed.extend(session.execute(select(table.c.id).where(
                    live, table.c.resource_id.in_(chunk))).scalars())

    def live_count(self) -> int:
        table = Grant.__table__
        with Session(self.engine) as session:
            return session.execute(select(func.count()).select_from(table).where(
                self._where(table), table.c.deleted_at.is_(None))).scalar_one()

    def apply_deletions(self) -> int:
        """Mark deleted everything noted as gone."""
        table = Grant.__table__
        doomed, self.doomed = sorted(set(self.doomed)), []
        if not doomed:
            return 0
        deleted = 0
        with Session(self.engine) as session:
            for chunk in chunks(doomed):
                keys = session.execute(select(table.c.resource_type, table.c.resource_id, table.c.entitlement,
                                              table.c.principal_type, table.c.principal_id, table.c.via)
                                       .where(table.c.id.in_(chunk), table.c.deleted_at.is_(None))).all()
                history.record(session, [history.grant_change(self.connector_id, "deleted", GrantRecord(*key),
                                                              self.now, run_id=self.run_id) for key in keys])
                result = session.execute(update(table).where(table.c.id.in_(chunk), table.c.deleted_at.is_(None))
                                         .values(deleted_at=self.now))
                deleted += result.rowcount or 0
            commit_write(session, self.connector_id, self.run_id)
        self.counts["grants_deleted"] += deleted
        self.counts["rows_written"] += deleted
        return deleted

    def delete_unseen_scopes(self) -> int:
        """``plan_unseen_scopes`` and ``apply_deletions`` at once, for parts without a safety valve."""
        self.plan_unseen_scopes()
        return self.apply_deletions()
