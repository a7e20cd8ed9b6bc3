"""Writing what a sync part saw: diff against the database, bulk-upsert only what changed, mark the rest deleted.

A part knows, when it ends successfully, everything JumpCloud holds of its type; so whatever it did not see is
gone. Resources are compared by content hash, grants by key, so a re-sync of an unchanged org writes no rows,
and a row that comes back loses its ``deleted_at``. Writes are ``INSERT ... ON CONFLICT DO UPDATE`` in bulk
(``models.bulk``), so a part run twice (a redelivered task) converges on the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, CursorResult, Engine, and_, func, or_, select, update
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models import history
from models.bulk import bulk_upsert, chunks
from models.dataversion import commit_write
from models.names import lookup_key
from models.tables import Grant, Resource, table_of

#: Grant key columns, in the order of ``(resource id, *GrantRecord.key)``: how the writers diff stored rows.
_GrantKey = tuple[str, str, str, str, str]


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
    bulk_upsert(session, table_of(Resource), rows, RESOURCE_KEY, RESOURCE_UPDATE)


def grant_row(connector_id: int, grant: GrantRecord, source: str, now: datetime,
              written_at: datetime | None = None) -> dict:
    """A grant row; ``written_at`` for provisioning's write-through (a sync leaves it None)."""
    return {"connector_id": connector_id, "resource_type": grant.resource_type, "resource_id": grant.resource_id,
            "entitlement": grant.entitlement, "principal_type": grant.principal_type,
            "principal_id": grant.principal_id, "via": grant.via, "source": source, "first_seen_at": now,
            "deleted_at": None, "written_at": written_at}


GRANT_KEY = ("connector_id", "resource_type", "resource_id", "entitlement", "principal_type", "principal_id", "via")


def upsert_grant_rows(session: Session, rows: list[dict], *, written: bool = False) -> None:
    """Insert grants, or bring back deleted ones; a live grant is left as it is (but for ``written_at`` when
    ``written``: the write-through's)."""
    bulk_upsert(session, table_of(Grant), rows, GRANT_KEY,
                ("source", "deleted_at", "written_at") if written else ("source", "deleted_at"))


class WriterState(BaseModel):
    """What a writer has seen (resource ids; a grant writer's scopes), counted and noted as gone (grant row ids),
    and whether it writes the baseline: saved in a part's checkpoint (``pipeline.checkpoint``), restored by the
    attempt that takes the part over, so that its deletions still follow the whole listing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seen: tuple[str, ...]
    counts: dict[str, int]
    baseline: bool
    doomed: tuple[int, ...] = ()


class _Writer:
    """What both writers keep: their counts, read by the part as a copy, and whether this is the baseline (the
    first sync of the type or source, which records no history: everything would be "created")."""

    _counts: Counter[str]
    _baseline: bool

    #: The count of rows created, and the count that says how many of them the baseline stored without history.
    _CREATED: str
    _BASELINE: str

    @property
    def counts(self) -> Counter[str]:
        """What this writer saw and wrote, by kind (a copy: the part's counts in its run's JSON). A baseline's
        creations are also counted as ``baseline`` (resources) or ``grants_baseline``: the history lists none of
        them, and ``jumpsync changes`` says from these counts where history starts (``models.history``)."""
        counts = Counter(self._counts)
        if self._baseline and counts[self._CREATED]:
            counts[self._BASELINE] = counts[self._CREATED]
        return counts

    @property
    def baseline(self) -> bool:
        return self._baseline

    def _seen_ids(self) -> set[str]:
        """The writer's own set of what it has seen (resource ids, or a grant writer's scopes)."""
        raise NotImplementedError

    def _doomed_ids(self) -> list[int]:
        return []

    def state(self) -> WriterState:
        """What this writer knows now (read on the thread that writes, between writes)."""
        return WriterState(seen=tuple(sorted(self._seen_ids())), counts=dict(self._counts), baseline=self._baseline,
                           doomed=tuple(sorted(set(self._doomed_ids()))))

    def restore(self, state: WriterState) -> None:
        """Go on from an earlier attempt's state, before the first write: what it saw counts as seen (the pages
        are not listed again), its counts go on, and the baseline stays what it was when the part began."""
        self._seen_ids().update(state.seen)
        self._counts.update(state.counts)
        self._baseline = state.baseline
        self._restore_doomed(state.doomed)

    def _restore_doomed(self, doomed: tuple[int, ...]) -> None:
        """A grant writer's hook: the grant rows an earlier attempt noted as gone."""


class ResourceWriter(_Writer):
    """Writes the resources of one type of one connector, as one part sees them.

    Its state (what it saw, what is stored, its counts) is its own: callers read ``counts`` and say what
    happened through its methods.
    """

    _CREATED, _BASELINE = "created", "baseline"

    def __init__(self, engine: Engine, connector_id: int, resource_type: str, now: datetime,
                 run_id: int | None = None, only: Iterable[str] | None = None, *, incremental: bool = False) -> None:
        """``only``: the ids this writer will write or delete (an incremental refresh), so that only their rows
        are read; a part reads every row of its type, to find what it did not see. ``incremental``: the writes
        apply on top of a full sync, so they are never the baseline and always record history."""
        self.engine = engine
        self.connector_id = connector_id
        self.resource_type = resource_type
        self.now = now
        self.run_id = run_id
        self._seen: set[str] = set()
        self._counts: Counter[str] = Counter()
        table = table_of(Resource)
        query = select(table.c.external_id, table.c.content_hash, table.c.deleted_at).where(
            table.c.connector_id == connector_id, table.c.type == resource_type)
        #: external id -> (content hash, deleted?)
        self._existing: dict[str, tuple[str, bool]] = {}
        with Session(engine) as session:
            for ids in ([None] if only is None else chunks(sorted(set(only)))):
                rows = session.execute(query if ids is None else query.where(table.c.external_id.in_(ids)))
                self._existing.update((r[0], (r[1], r[2] is not None)) for r in rows)
        #: The first sync of a type is the baseline: it records no history (everything would be "created").
        self._baseline = not incremental and only is None and not self._existing

    def _seen_ids(self) -> set[str]:
        return self._seen

    def note_inconsistent_listing(self, pages: int) -> None:
        """The listing changed while it was read (``pages`` were inconsistent): an absence proves nothing, so the
        part deletes nothing and its counts say why."""
        self._counts["inconsistent_pages"] = pages
        self._counts["deletions_deferred"] = 1

    def write(self, records: Iterable[ResourceRecord]) -> None:
        rows, changed = [], []
        for record in records:
            if record.id in self._seen:  # listed twice because the data moved between pages
                self._counts["repeated"] += 1
                continue
            self._seen.add(record.id)
            self._counts["seen"] += 1
            digest = record.content_hash()
            before = self._existing.get(record.id)
            if before is None:
                kind = "created"
            elif before[1]:
                kind = "undeleted"
            elif before[0] != digest:
                kind = "updated"
            else:
                continue
            self._counts[kind] += 1
            rows.append(resource_row(self.connector_id, record, self.now, digest))
            changed.append((kind, record))
        if rows:
            with Session(self.engine) as session:
                if not self._baseline:
                    history.record(session, self._history(session, changed))
                upsert_resource_rows(session, rows)
                commit_write(session, self.connector_id, self.run_id)
            self._counts["rows_written"] += len(rows)

    def _history(self, session: Session, changed: list[tuple[str, ResourceRecord]]) -> list[dict]:
        """History rows for a batch, with the fields that changed (read before the upsert overwrites them)."""
        table = table_of(Resource)
        old: dict[str, dict[str, Any]] = {}
        ids = [record.id for kind, record in changed if kind != "created"]
        for chunk in chunks(ids):
            for row in session.execute(select(table.c.external_id, table.c.name, table.c.email, table.c.status,
                                              table.c.profile).where(
                    table.c.connector_id == self.connector_id, table.c.type == self.resource_type,
                    table.c.external_id.in_(chunk))).mappings():
                old[row["external_id"]] = dict(row)
        return [history.resource_change(
            self.connector_id, kind, self.resource_type, record.id, self.now, run_id=self.run_id,
            fields=history.field_changes(old[record.id], record) if record.id in old else None)
            for kind, record in changed]

    def live_count(self) -> int:
        return sum(1 for _, deleted in self._existing.values() if not deleted)

    def unseen(self) -> list[str]:
        """Live rows that this part did not see: what disappeared from JumpCloud."""
        return [rid for rid, (_, deleted) in self._existing.items() if not deleted and rid not in self._seen]

    def delete_unseen(self) -> int:
        return self.delete(self.unseen())

    def delete(self, ids: Iterable[str]) -> int:
        """Mark these live rows deleted, with their history."""
        gone = [rid for rid in ids if rid in self._existing and not self._existing[rid][1]]
        if not gone:
            return 0
        table = table_of(Resource)
        with Session(self.engine) as session:
            history.record(session, [history.resource_change(self.connector_id, "deleted", self.resource_type, rid,
                                                             self.now, run_id=self.run_id) for rid in gone])
            for chunk in chunks(gone):
                session.execute(update(table).where(
                    table.c.connector_id == self.connector_id, table.c.type == self.resource_type,
                    table.c.external_id.in_(chunk), table.c.deleted_at.is_(None)).values(deleted_at=self.now))
            commit_write(session, self.connector_id, self.run_id)
        self._counts["deleted"] += len(gone)
        self._counts["rows_written"] += len(gone)
        return len(gone)


def _not_written_since(scopes: dict[str, list[GrantRecord]], written_since: set[_GrantKey]) -> Iterator[GrantRecord]:
    """The listed grants but those on rows written through since the writer began (``GrantWriter._stored``)."""
    for grants in scopes.values():
        for grant in grants:
            if (grant.resource_id, *grant.key) not in written_since:
                yield grant


class GrantWriter(_Writer):
    """Writes the grants one source (a part) owns, one resource (a "scope") at a time.

    Each scope written is the complete set of grants on that resource: what is new is inserted and what came
    back is undeleted at once; what is missing is only noted (``doomed``), and marked deleted by
    ``apply_deletions`` once the part knows its listing was complete and the deletion safety valve agrees.
    Scopes never written by the end of the part belong to resources that are gone (``plan_unseen_scopes``).
    """

    _CREATED, _BASELINE = "grants_created", "grants_baseline"

    def __init__(self, engine: Engine, connector_id: int, resource_type: str, source: str, now: datetime,
                 run_id: int | None = None, *, incremental: bool = False) -> None:
        """``incremental``: the writes apply on top of a full sync (an incremental refresh), so they are never
        the baseline and always record history."""
        self.engine = engine
        self.connector_id = connector_id
        self.resource_type = resource_type
        self.source = source
        self.now = now
        self.run_id = run_id
        self._baseline = False
        if not incremental:
            table = table_of(Grant)
            with Session(engine) as session:  # the first sync of a source is the baseline: no history
                self._baseline = session.execute(
                    select(table.c.id).where(self._where()).limit(1)).first() is None
        self._seen_scopes: set[str] = set()
        self._counts: Counter[str] = Counter()
        #: ids of live grant rows this part found gone, not yet marked deleted
        self._doomed: list[int] = []

    @property
    def doomed(self) -> tuple[int, ...]:
        """Ids of the live grant rows noted as gone, not yet marked deleted (possibly repeated)."""
        return tuple(self._doomed)

    def _seen_ids(self) -> set[str]:
        return self._seen_scopes

    def _doomed_ids(self) -> list[int]:
        return self._doomed

    def _restore_doomed(self, doomed: tuple[int, ...]) -> None:
        self._doomed.extend(doomed)

    def _where(self) -> ColumnElement[bool]:
        table = table_of(Grant)
        return and_(table.c.connector_id == self.connector_id, table.c.source == self.source)

    def write_scopes(self, scopes: dict[str, list[GrantRecord]]) -> None:
        if not scopes:
            return
        table = table_of(Grant)
        fresh = {rid: rid not in self._seen_scopes for rid in scopes}
        self._seen_scopes.update(scopes)
        # On the baseline (no row of this source existed when the part began), a scope not yet written in this
        # part has no rows to diff against: skip the read. It matters on a first sync into PostgreSQL, whose
        # planner, without statistics for a table that grows by the batch, scans the whole table each time.
        lookup = [rid for rid in scopes if not (self._baseline and fresh[rid])]
        with Session(self.engine) as session:
            existing, written_since = self._stored(session, table.c.resource_id, lookup)
            wanted, changed = self._diff(existing, _not_written_since(scopes, written_since))
            self._counts["grants_seen"] += len(wanted)
            # A scope written a second time in the same part (a listing that repeated a resource) only adds.
            gone = [row_id for key, (row_id, deleted) in existing.items()
                    if not deleted and key not in wanted and fresh[key[0]]]
            if changed:
                self._insert(session, changed)
                commit_write(session, self.connector_id, self.run_id)
        self._doomed.extend(gone)

    def _stored(self, session: Session, column: Any, ids: Sequence[str], *conditions: ColumnElement[bool]
                ) -> tuple[dict[_GrantKey, tuple[int, bool]], set[_GrantKey]]:
        """This source's rows whose ``column`` is one of ``ids``: (resource id, *``GrantRecord.key``) -> (row id,
        deleted?); and apart, the keys of the rows provisioning's write-through set after this writer began. This
        listing may be older than that change, so it neither deletes nor brings back such a row (the next sync
        settles it)."""
        table = table_of(Grant)
        existing: dict[_GrantKey, tuple[int, bool]] = {}
        written_since: set[_GrantKey] = set()
        for chunk in chunks(ids):
            for row in session.execute(select(
                    table.c.id, table.c.resource_id, table.c.entitlement, table.c.principal_type,
                    table.c.principal_id, table.c.via, table.c.deleted_at, table.c.written_at,
            ).where(self._where(), *conditions, column.in_(chunk))):
                key = (row.resource_id, row.entitlement, row.principal_type, row.principal_id, row.via)
                if row.written_at is not None and row.written_at > self.now:
                    written_since.add(key)
                else:
                    existing[key] = (row.id, row.deleted_at is not None)
        return existing, written_since

    @staticmethod
    def _diff(existing: dict[_GrantKey, tuple[int, bool]], grants: Iterable[GrantRecord]
              ) -> tuple[set[_GrantKey], list[tuple[str, GrantRecord]]]:
        """The keys of ``grants`` (each once), and those of them that are new (``created``) or deleted and back
        (``undeleted``)."""
        wanted: set[_GrantKey] = set()
        changed: list[tuple[str, GrantRecord]] = []
        for grant in grants:
            key: _GrantKey = (grant.resource_id, *grant.key)
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
        changes = list(changed)
        with Session(self.engine) as session:
            for chunk in chunks(changes, batch):
                self._insert(session, chunk)
                commit_write(session, self.connector_id, self.run_id)

    def record_bulk_insert(self, inserted: int) -> None:
        """Count grants the caller created in one statement of its own (a baseline's ``INSERT ... SELECT``),
        without history, as the baseline records none."""
        self._counts["grants_created"] += inserted
        self._counts["rows_written"] += inserted

    def _insert(self, session: Session, changed: Sequence[tuple[str, GrantRecord]]) -> None:
        for kind, _ in changed:
            self._counts[f"grants_{kind}"] += 1
        if not self._baseline:
            history.record(session, [history.grant_change(self.connector_id, kind, grant, self.now,
                                                          run_id=self.run_id) for kind, grant in changed])
        upsert_grant_rows(session, [grant_row(self.connector_id, grant, self.source, self.now)
                                    for _, grant in changed])
        self._counts["rows_written"] += len(changed)

    def write_principal_scopes(self, principal_type: str, scopes: dict[str, list[GrantRecord]],
                               removable: set[tuple[str, str]] | None = None) -> None:
        """Like ``write_scopes``, from the principal's side: each scope is every grant of this source that one
        principal holds (a user's memberships, a user's or group's app bindings), read back by an incremental
        refresh. What is new or back is written at once; what the principal no longer holds is noted in
        ``doomed`` for ``apply_deletions``, if ``removable`` (principal id, resource id) pairs include it (the
        edges that events named: an absence alone deletes nothing)."""
        if not scopes:
            return
        table = table_of(Grant)
        with Session(self.engine) as session:
            existing, written_since = self._stored(session, table.c.principal_id, sorted(scopes),
                                                   table.c.resource_type == self.resource_type,
                                                   table.c.principal_type == principal_type)
            wanted, changed = self._diff(existing, _not_written_since(scopes, written_since))
            self._counts["grants_seen"] += len(wanted)
            if changed:
                self._insert(session, changed)
                commit_write(session, self.connector_id, self.run_id)
        self._doomed.extend(row_id for key, (row_id, deleted) in existing.items()
                            if not deleted and key not in wanted
                            and (removable is None or (key[3], key[0]) in removable))

    def plan_deletion(self, *, resource_ids: Iterable[str] = (), principal_ids: Iterable[str] = ()) -> None:
        """Note as gone every live grant of this source on these resources or held by these principals (the
        objects were deleted in JumpCloud, and their edges with them)."""
        table = table_of(Grant)
        live = and_(self._where(), table.c.deleted_at.is_(None))
        with Session(self.engine) as session:
            for column, ids in ((table.c.resource_id, resource_ids), (table.c.principal_id, principal_ids)):
                for chunk in chunks(sorted(set(ids))):
                    self._doomed.extend(session.execute(select(table.c.id).where(live, column.in_(chunk))).scalars())

    def plan_row_deletions(self, row_ids: Iterable[int]) -> None:
        """Note as gone these grant rows of this source, found gone by the caller (e.g. a diff computed in SQL)."""
        self._doomed.extend(row_ids)

    def plan_unseen_scopes(self) -> None:
        """Note as gone the live grants on resources this part never wrote a scope for."""
        table = table_of(Grant)
        live = and_(self._where(), table.c.deleted_at.is_(None))
        with Session(self.engine) as session:  # the resources first (few), then only the grants of the unseen
            scopes = session.execute(select(table.c.resource_id).where(live).distinct()).scalars()
            unseen = [resource_id for resource_id in scopes if resource_id not in self._seen_scopes]
            for chunk in chunks(unseen):
                self._doomed.extend(session.execute(select(table.c.id).where(
                    live, table.c.resource_id.in_(chunk))).scalars())

    def live_count(self) -> int:
        table = table_of(Grant)
        with Session(self.engine) as session:
            return session.execute(select(func.count()).select_from(table).where(
                self._where(), table.c.deleted_at.is_(None))).scalar_one()

    def apply_deletions(self) -> int:
        """Mark deleted everything noted as gone."""
        table = table_of(Grant)
        doomed, self._doomed = sorted(set(self._doomed)), []
        if not doomed:
            return 0
        deleted = 0
        with Session(self.engine) as session:
            # A row written through after this writer began is the write-through's: left as it is.
            ours = or_(table.c.written_at.is_(None), table.c.written_at <= self.now)
            for chunk in chunks(doomed):
                keys = session.execute(select(table.c.resource_type, table.c.resource_id, table.c.entitlement,
                                              table.c.principal_type, table.c.principal_id, table.c.via)
                                       .where(table.c.id.in_(chunk), table.c.deleted_at.is_(None), ours)).all()
                history.record(session, [history.grant_change(self.connector_id, "deleted", GrantRecord(*key),
                                                              self.now, run_id=self.run_id) for key in keys])
                result = cast(CursorResult[Any], session.execute(
                    update(table).where(table.c.id.in_(chunk), table.c.deleted_at.is_(None), ours)
                    .values(deleted_at=self.now)))
                deleted += result.rowcount or 0
            commit_write(session, self.connector_id, self.run_id)
        self._counts["grants_deleted"] += deleted
        self._counts["rows_written"] += deleted
        return deleted

    def delete_unseen_scopes(self) -> int:
        """``plan_unseen_scopes`` and ``apply_deletions`` at once, for parts without a safety valve."""
        self.plan_unseen_scopes()
        return self.apply_deletions()
