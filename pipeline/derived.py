"""The derived parts of a sync: what is computed from the fetched rows instead of asked of the API.

- ``role``: roles and their assignments, from the admins' role names (``connector.roles``);
- ``admin_link``: each admin's user account, by email (``connector.admins.link_admins``);
- ``app_via_group``: a user's access to an app through a group bound to it, from the app-group bindings and
  the group memberships the fetch parts stored.

They run in the finalizer once their input parts succeeded (``run_derived_parts``). Each reads only what it
needs: the access through groups is joined and diffed in the database, so it holds neither every membership
nor every derived grant in memory (on ``xl`` that was the worker's peak), and a re-sync that changed nothing
reads back no rows at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, and_, false, insert, literal, or_, select, update
from sqlmodel import Session, col

from config.words import noun
from connector.admins import link_admins
from connector.client_factory import describe_error
from connector.records import GrantRecord
from connector.roles import derive_roles
from models.dataversion import commit_write
from models.names import lookup_key
from models.states import USABLE_PART_STATUSES, PartStatus, RunStatus
from models.store import GrantWriter, ResourceWriter
from models.tables import Grant, Resource, SyncPart, table_of, utcnow
from pipeline.claims import PartLease, claim_part, end_part
from pipeline.plan import DERIVED_PARTS
from telemetry import metrics

VIA_GROUP = "app_via_group"


def _live(connector_id: int, resource_type: str, *columns):
    table = table_of(Resource)
    return select(*columns).where(table.c.connector_id == connector_id, table.c.type == resource_type,
                                  table.c.deleted_at.is_(None))


def derive_roles_part(engine: Engine, connector_id: int, run_id: int | None = None) -> Counter:
    now = utcnow()
    table = table_of(Resource)
    with Session(engine) as session:
        admins = [(admin_id, list((profile or {}).get("role_names", []))) for admin_id, profile in
                  session.execute(_live(connector_id, "admin", table.c.external_id, table.c.profile))]
    roles, assigned = derive_roles(admins)
    resources = ResourceWriter(engine, connector_id, "role", now, run_id)
    resources.write(roles)
    resources.delete_unseen()
    grants = GrantWriter(engine, connector_id, "role", "role", now, run_id)
    scopes: dict[str, list[GrantRecord]] = {role.id: [] for role in roles}
    for grant in assigned:
        scopes[grant.resource_id].append(grant)
    grants.write_scopes(scopes)
    grants.delete_unseen_scopes()
    return resources.counts + grants.counts


def derive_admin_links_part(engine: Engine, connector_id: int, run_id: int | None = None) -> Counter:
    """Link each admin to the user with its email. Only the users with an admin's email are read (by the
    email index), not every user."""
    counts: Counter = Counter()
    table = table_of(Resource)
    with Session(engine) as session:
        admins = session.execute(_live(connector_id, "admin", table.c.external_id, table.c.email,
                                       table.c.linked_user_id)).all()
        keys = sorted({lookup_key(row.email) for row in admins if row.email})
        users = session.execute(_live(connector_id, "user", table.c.external_id, table.c.email)
                                .where(table.c.email_key.in_(keys))).all() if keys else []
        links = link_admins(((row.external_id, row.email) for row in admins), users)
        for row in admins:
            counts["admins_linked"] += links[row.external_id] is not None
            if links[row.external_id] != row.linked_user_id:
                session.execute(update(table).where(
                    table.c.connector_id == connector_id, table.c.type == "admin",
                    table.c.external_id == row.external_id).values(linked_user_id=links[row.external_id]))
                counts["rows_written"] += 1
        if counts["rows_written"]:
            commit_write(session, connector_id, run_id)
    return counts


# --- access through groups, in SQL ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AccessScope:
    """The part of the access through groups an incremental refresh recomputes: every (app, user, group) whose
    user, group or app it touched. None (the default of the functions below) is all of it."""

    users: Collection[str] = field(default_factory=frozenset)
    groups: Collection[str] = field(default_factory=frozenset)
    apps: Collection[str] = field(default_factory=frozenset)

    def where(self, app_column, user_column, group_column):
        conditions = [column.in_(sorted(ids)) for column, ids in
                      ((user_column, self.users), (group_column, self.groups), (app_column, self.apps)) if ids]
        return or_(*conditions) if conditions else false()


def _access_via_groups(connector_id: int, scope: AccessScope | None = None):
    """(app id, user id, group id): every live member of every group bound to a live app."""
    grants, apps = table_of(Grant), table_of(Resource)
    binding, member, app = grants.alias("binding"), grants.alias("member"), apps.alias("app")
    query = (
        select(binding.c.resource_id.label("app_id"), member.c.principal_id.label("user_id"),
               binding.c.principal_id.label("group_id"))
        .select_from(
            binding
            .join(app, and_(app.c.connector_id == binding.c.connector_id, app.c.type == "app",
                            app.c.external_id == binding.c.resource_id, app.c.deleted_at.is_(None)))
            .join(member, and_(member.c.connector_id == binding.c.connector_id, member.c.source == "group",
                               member.c.resource_type == "group", member.c.resource_id == binding.c.principal_id,
                               member.c.principal_type == "user", member.c.deleted_at.is_(None))))
        .where(binding.c.connector_id == connector_id, binding.c.source == "app",
               binding.c.resource_type == "app", binding.c.principal_type == "group",
               binding.c.deleted_at.is_(None)))
    if scope is not None:
        query = query.where(scope.where(binding.c.resource_id, member.c.principal_id, binding.c.principal_id))
    return query


def _stored(connector_id: int, scope: AccessScope | None = None):
    """(app id, user id, group id) of the live access-through-group rows."""
    row = table_of(Grant).alias("stored")
    query = select(row.c.resource_id, row.c.principal_id, row.c.via).where(
        row.c.connector_id == connector_id, row.c.source == VIA_GROUP, row.c.deleted_at.is_(None))
    if scope is not None:
        query = query.where(scope.where(row.c.resource_id, row.c.principal_id, row.c.via))
    return query


def _by_key(connector_id: int, keys):
    """Join (app, user, group) ``keys`` to their grant rows by the grants' unique key."""
    row = table_of(Grant).alias("row")
    return row, and_(row.c.connector_id == connector_id, row.c.resource_type == "app",
                     row.c.resource_id == keys.c[0], row.c.entitlement == "access", row.c.principal_type == "user",
                     row.c.principal_id == keys.c[1], row.c.via == keys.c[2])


def _new_or_back(connector_id: int, scope: AccessScope | None = None):
    """Derived access with no live row, and the id of its deleted row if there is one (None: a new grant).

    Set differences (``EXCEPT``) of the derived and the stored triples, hashed or sorted by the database, then
    a key look-up for the few that differ: a per-row probe of every derived grant took a second on ``large``."""
    new = _access_via_groups(connector_id, scope).except_(_stored(connector_id, scope)).subquery("new")
    row, on_key = _by_key(connector_id, new)
    return select(new.c[0], new.c[1], new.c[2], row.c.id).select_from(new.outerjoin(row, on_key))


def _gone(connector_id: int, scope: AccessScope | None = None):
    """Ids of live access-through-group rows no longer derived (the binding, the membership or the app went)."""
    gone = _stored(connector_id, scope).except_(_access_via_groups(connector_id, scope)).subquery("gone")
    row, on_key = _by_key(connector_id, gone)
    return select(row.c.id).select_from(gone.join(row, on_key)).where(row.c.deleted_at.is_(None))


def derive_app_via_group_part(engine: Engine, connector_id: int, run_id: int | None = None,
                              scope: AccessScope | None = None) -> Counter:
    """Access through groups, diffed in the database against what is stored: new rows inserted, rows whose
    binding or membership went marked deleted, each with its history (none for the first, baseline sync).
    With a ``scope``, only the access of those users, groups and apps (an incremental refresh)."""
    now = utcnow()
    writer = GrantWriter(engine, connector_id, "app", VIA_GROUP, now, run_id, incremental=scope is not None)
    if writer.baseline:  # nothing to diff against and no history to write: one INSERT ... SELECT
        grants = table_of(Grant)
        derived = _access_via_groups(connector_id).subquery("derived")
        rows = select(literal(connector_id), literal("app"), derived.c.app_id, literal("access"), literal("user"),
                      derived.c.user_id, derived.c.group_id, literal(VIA_GROUP),
                      literal(now, grants.c.first_seen_at.type))
        with Session(engine) as session:
            result = cast(CursorResult[Any], session.execute(insert(grants).from_select(
                ["connector_id", "resource_type", "resource_id", "entitlement", "principal_type", "principal_id",
                 "via", "source", "first_seen_at"], rows),
                execution_options={"preserve_rowcount": True}))  # psycopg 3 forgets the row count otherwise
            inserted = result.rowcount
            commit_write(session, connector_id, run_id)
        writer.record_bulk_insert(inserted)
        return writer.counts
    with Session(engine) as session:
        changed = [("created" if row_id is None else "undeleted",
                    GrantRecord("app", app_id, "access", "user", user_id, via=group_id))
                   for app_id, user_id, group_id, row_id in session.execute(_new_or_back(connector_id, scope))]
        writer.plan_row_deletions(row_id for (row_id,) in session.execute(_gone(connector_id, scope)))
    writer.insert_changes(changed)
    writer.apply_deletions()
    return writer.counts


DERIVERS: dict[str, Callable[[Engine, int, int | None], Counter]] = {
    "role": derive_roles_part,
    "admin_link": derive_admin_links_part,
    VIA_GROUP: derive_app_via_group_part,
}


#: A run whose fetch parts wrote at least this many rows refreshes PostgreSQL's statistics before deriving.
ANALYZE_MIN_ROWS = 10_000


def refresh_statistics(engine: Engine, rows_written: int) -> bool:
    """PostgreSQL plans the derivations' joins from table statistics, which autovacuum gathers only some time
    after a bulk load (a first sync writes every row at once). ``ANALYZE`` samples a fixed number of rows, so its
    cost does not grow with the tenant. SQLite plans by its indexes and needs none."""
    if engine.dialect.name != "postgresql" or rows_written < ANALYZE_MIN_ROWS:
        return False
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE grants, resources")
    return True


def run_derived_parts(engine: Engine, run_id: int) -> None:
    """Run each derived part whose inputs all succeeded in this run; skip (and delete nothing) otherwise."""
    with Session(engine) as session:
        parts = {p.name: p for p in session.execute(select(SyncPart).where(col(SyncPart.run_id) == run_id)).scalars()}
    if any(part.status == PartStatus.PENDING for name, part in parts.items() if name in DERIVED_PARTS):
        refresh_statistics(engine, sum((part.counts or {}).get("rows_written", 0) for name, part in parts.items()
                                       if name not in DERIVED_PARTS))
    for name, inputs in DERIVED_PARTS.items():
        if name not in parts or parts[name].status != PartStatus.PENDING:
            continue
        claim = claim_part(engine, run_id, name, run_status=RunStatus.FINALIZING, take_over_running=False)
        if claim.attempt is None or claim.connector_id is None or claim.connector_name is None:
            continue
        not_ok = [i for i in inputs if parts.get(i) is None or parts[i].status not in USABLE_PART_STATUSES]
        if not_ok:
            end_part(engine, run_id, name, claim.attempt, status=PartStatus.SKIPPED,
                     error=f"input {noun(len(not_ok), 'part')} {', '.join(not_ok)} did not succeed; nothing "
                           "derived or deleted")
            continue
        clock = metrics.Stopwatch()
        try:
            with PartLease(engine, run_id, name, claim.attempt):
                counts = DERIVERS[name](engine, claim.connector_id, run_id)
        except Exception as exc:  # noqa: BLE001
            end_part(engine, run_id, name, claim.attempt, status=PartStatus.FAILED, error=describe_error(exc))
            metrics.observe_part(claim.connector_name, name, PartStatus.FAILED, clock.seconds)
            continue
        end_part(engine, run_id, name, claim.attempt, status=PartStatus.SUCCEEDED, counts=dict(counts))
        metrics.observe_part(claim.connector_name, name, PartStatus.SUCCEEDED, clock.seconds)
