"""Once JumpCloud accepted a change, the database shows it at once, in the form the next sync will write.

Grants are written with the source that a sync would give them (so the next sync neither deletes nor rewrites
them), records are mapped by the same functions the syncers use, and access through a group is kept in step
when a membership or a group binding changes.

The runner hands the writer the request's session: the write-through is then committed in one transaction with
the request's outcome (``requests.finish_in``), so that a request recorded as succeeded always has its change in
the database, and a write-through is never kept for a request whose outcome was not recorded (a worker that lost
the request to another: the new owner applies and writes it again, with one effect).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, bindparam, select, update
from sqlmodel import Session

from connector.admins import map_admin
from connector.records import GrantRecord, ResourceRecord
from connector.roles import derive_roles, role_id
from connector.users import map_user
from models import history
from models.bulk import chunks
from models.dataversion import bump_data_version
from models.db import session_on
from models.lookup import rows_by_keys
from models.store import GRANT_KEY, grant_row, resource_row, upsert_grant_rows, upsert_resource_rows
from models.tables import Grant, Resource, table_of, utcnow

#: The columns of a grant's unique key within its connector (``uq_grants_key``).
_IDENTITY = GRANT_KEY[1:]


def _identity(grant: GrantRecord) -> tuple[str, str, str, str, str, str]:
    """A grant's unique key within its connector: its values of ``_IDENTITY``."""
    return (grant.resource_type, grant.resource_id, *grant.key)


_GRANTS, _RESOURCES = table_of(Grant), table_of(Resource)
#: The apps a group is bound to (live), and a group's members (live): built once, run by every membership or
#: group binding change.
_APPS_BOUND_TO_GROUP = select(_GRANTS.c.resource_id).where(
    _GRANTS.c.connector_id == bindparam("connector_id"), _GRANTS.c.deleted_at.is_(None), _GRANTS.c.source == "app",
    _GRANTS.c.principal_type == "group", _GRANTS.c.principal_id == bindparam("group_id"))
_GROUP_MEMBERS = select(_GRANTS.c.principal_id).where(
    _GRANTS.c.connector_id == bindparam("connector_id"), _GRANTS.c.deleted_at.is_(None), _GRANTS.c.source == "group",
    _GRANTS.c.resource_id == bindparam("group_id"))


class WriteThrough:
    """Writes one request's effect; every row it changes is also recorded in the change history with the
    request's id, since the next sync will find nothing to record."""

    def __init__(self, bind: Engine | Session, connector_id: int, request_id: str | None = None) -> None:
        """``bind``: an engine (each write is its own transaction, committed) or a session that the caller owns
        (the writes join its transaction; the caller commits them)."""
        self.bind = bind
        self.connector_id = connector_id
        self.request_id = request_id

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A write's session. Each write ends by bumping the connector's data version in it, so that a stored
        rendering of the report and export made before it is no longer served (models.dataversion)."""
        with session_on(self.bind, commit=True) as session:
            yield session
            bump_data_version(session.connection(), self.connector_id)

    def _stored(self, session: Session, grants: list[GrantRecord]) -> dict[tuple, tuple[int, object]]:
        """The stored rows among ``grants``: ``_identity`` -> (row id, ``deleted_at``; None when live), read
        together (a member of a group bound to ten apps has eleven grants)."""
        rows = rows_by_keys(session.connection(), _GRANTS, GRANT_KEY,
                            [(self.connector_id, *_identity(g)) for g in grants], ("id", "deleted_at", *_IDENTITY))
        return {tuple(row[2:]): (row[0], row[1]) for row in rows}

    def _set_grants(self, session: Session, grants: list[tuple[GrantRecord, str]], present: bool) -> None:
        """Make ``grants`` (each with the source a sync would give it) live, or deleted, recording each change."""
        if not grants:
            return
        now = utcnow()
        stored = self._stored(session, [grant for grant, _ in grants])
        changed, ended = [], []
        for grant, _ in grants:
            row_id, deleted_at = stored.get(_identity(grant), (None, None))
            if present and (row_id is None or deleted_at is not None):
                changed.append((grant, "created" if row_id is None else "undeleted"))
            elif not present and row_id is not None and deleted_at is None:
                changed.append((grant, "deleted"))
                ended.append(row_id)
        history.record(session, [history.grant_change(self.connector_id, kind, grant, now, request_id=self.request_id)
                                 for grant, kind in changed])
        if present:  # stamped: a sync part that began before leaves them as written (models.store.GrantWriter)
            upsert_grant_rows(session, [grant_row(self.connector_id, g, source, now, written_at=now)
                                        for g, source in grants], written=True)
            return
        for part in chunks(ended, 1000):  # only the grants that were live are marked deleted
            session.execute(update(_GRANTS).where(_GRANTS.c.id.in_(part)).values(deleted_at=now, written_at=now))

    def group_member(self, group_id: str, user_id: str, present: bool) -> None:
        with self._transaction() as session:
            grants = [(GrantRecord("group", group_id, "member", "user", user_id), "group")]
            apps = session.connection().execute(_APPS_BOUND_TO_GROUP, {"connector_id": self.connector_id,
                                                                       "group_id": group_id}).scalars()
            grants += [(GrantRecord("app", app_id, "access", "user", user_id, via=group_id), "app_via_group")
                       for app_id in apps]
            self._set_grants(session, grants, present)

    def app_access(self, app_id: str, principal_type: str, principal_id: str, present: bool) -> None:
        with self._transaction() as session:
            grants = [(GrantRecord("app", app_id, "access", principal_type, principal_id), "app")]
            if principal_type == "group":
                members = session.connection().execute(_GROUP_MEMBERS, {"connector_id": self.connector_id,
                                                                        "group_id": principal_id}).scalars()
                grants += [(GrantRecord("app", app_id, "access", "user", user_id, via=principal_id),
                            "app_via_group") for user_id in members]
            self._set_grants(session, grants, present)

    def _upsert(self, session: Session, record: ResourceRecord) -> None:
        table = _RESOURCES
        now = utcnow()
        old = session.execute(select(table.c.name, table.c.email, table.c.status, table.c.profile, table.c.deleted_at)
                              .where(table.c.connector_id == self.connector_id, table.c.type == record.type,
                                     table.c.external_id == record.id)).mappings().first()
        kind: str | None
        if old is None:
            kind, fields = "created", None
        else:
            fields = history.field_changes(dict(old), record) or None
            kind = "undeleted" if old["deleted_at"] is not None else ("updated" if fields else None)
        if kind:
            history.record(session, [history.resource_change(self.connector_id, kind, record.type, record.id, now,
                                                             request_id=self.request_id, fields=fields)])
        upsert_resource_rows(session, [resource_row(self.connector_id, record, now)])

    def user_record(self, record: dict) -> ResourceRecord:
        user = map_user(record)
        with self._transaction() as session:
            self._upsert(session, user)
        return user

    def user_deleted(self, user_id: str) -> None:
        """The account and every grant it held are gone."""
        now = utcnow()
        resources, grants = _RESOURCES, _GRANTS
        with self._transaction() as session:
            held = session.execute(select(grants.c.resource_type, grants.c.resource_id, grants.c.entitlement,
                                          grants.c.principal_type, grants.c.principal_id, grants.c.via).where(
                grants.c.connector_id == self.connector_id, grants.c.principal_type == "user",
                grants.c.principal_id == user_id, grants.c.deleted_at.is_(None))).all()
            history.record(session, [history.resource_change(self.connector_id, "deleted", "user", user_id, now,
                                                             request_id=self.request_id)]
                           + [history.grant_change(self.connector_id, "deleted", GrantRecord(*key), now,
                                                   request_id=self.request_id) for key in held])
            session.execute(update(resources).where(
                resources.c.connector_id == self.connector_id, resources.c.type == "user",
                resources.c.external_id == user_id, resources.c.deleted_at.is_(None)).values(deleted_at=now))
            session.execute(update(grants).where(
                grants.c.connector_id == self.connector_id, grants.c.principal_type == "user",
                grants.c.principal_id == user_id, grants.c.deleted_at.is_(None)).values(deleted_at=now))

    def admin_record(self, record: dict) -> None:
        """An admin whose role changed: the account, and its ``assigned`` grants."""
        admin = map_admin(record)
        roles, assigned = derive_roles([(admin.id, list(admin.profile.get("role_names", [])))])
        held = {g.resource_id for g in assigned}
        table = _GRANTS
        with self._transaction() as session:
            self._upsert(session, admin)
            for role in roles:  # a custom role seen for the first time; built-in ones are already there
                if role.id in held:
                    self._upsert_if_missing(session, role)
            others = session.execute(select(table.c.resource_id).where(
                table.c.connector_id == self.connector_id, table.c.source == "role",
                table.c.principal_id == admin.id, table.c.resource_id.not_in(held or {""}),
                table.c.deleted_at.is_(None))).scalars().all()
            self._set_grants(session, [(GrantRecord("role", rid, "assigned", "admin", admin.id), "role")
                                       for rid in others], present=False)
            self._set_grants(session, [(g, "role") for g in assigned], present=True)

    def _upsert_if_missing(self, session: Session, role: ResourceRecord) -> None:
        table = _RESOURCES
        exists = session.execute(select(table.c.id).where(
            table.c.connector_id == self.connector_id, table.c.type == "role",
            table.c.external_id == role_id(role.name), table.c.deleted_at.is_(None))).first()
        if exists is None:
            self._upsert(session, role)

