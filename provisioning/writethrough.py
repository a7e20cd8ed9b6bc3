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

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from connector.admins import map_admin
from connector.records import GrantRecord, ResourceRecord
from connector.roles import derive_roles, role_id
from connector.users import map_user
from models import history
from models.db import session_on
from models.store import grant_row, resource_row, upsert_grant_rows, upsert_resource_rows
from models.tables import Grant, Resource, utcnow


class WriteThrough:
    """Writes one request's effect; every row it changes is also recorded in the change history with the
    request's id, since the next sync will find nothing to record."""

    def __init__(self, bind: Engine | Session, connector_id: int, request_id: str | None = None) -> None:
        """``bind``: an engine (each write is its own transaction, committed) or a session that the caller owns
        (the writes join its transaction; the caller commits them)."""
        self.bind = bind
        self.connector_id = connector_id
        self.request_id = request_id

    def _grant_state(self, session: Session, grant: GrantRecord) -> str:
        """``live``, ``deleted`` or ``absent``."""
        table = Grant.__table__
        row = session.execute(select(table.c.deleted_at).where(
            table.c.connector_id == self.connector_id, table.c.resource_type == grant.resource_type,
            table.c.resource_id == grant.resource_id, table.c.entitlement == grant.entitlement,
            table.c.principal_type == grant.principal_type, table.c.principal_id == grant.principal_id,
            table.c.via == grant.via)).first()
        return "absent" if row is None else ("deleted" if row.deleted_at is not None else "live")

    def _set_grants(self, session: Session, grants: list[tuple[GrantRecord, str]], present: bool) -> None:
        now = utcnow()
        changes = []
        for grant, _ in grants:
            state = self._grant_state(session, grant)
            kind = ({"absent": "created", "deleted": "undeleted"}.get(state) if present
                    else ("deleted" if state == "live" else None))
            if kind:
                changes.append(history.grant_change(self.connector_id, kind, grant, now, request_id=self.request_id))
        history.record(session, changes)
        if present:
            upsert_grant_rows(session, [grant_row(self.connector_id, g, source, now) for g, source in grants])
            return
        table = Grant.__table__
        for grant, _ in grants:
            session.execute(update(table).where(
                table.c.connector_id == self.connector_id, table.c.resource_type == grant.resource_type,
                table.c.resource_id == grant.resource_id, table.c.entitlement == grant.entitlement,
                table.c.principal_type == grant.principal_type, table.c.principal_id == grant.principal_id,
                table.c.via == grant.via, table.c.deleted_at.is_(None)).values(deleted_at=now))

    def _live_grants(self, session: Session, *conditions) -> list:
        table = Grant.__table__
        return session.execute(select(table.c.resource_id, table.c.principal_id).where(
            table.c.connector_id == self.connector_id, table.c.deleted_at.is_(None), *conditions)).all()

    def group_member(self, group_id: str, user_id: str, present: bool) -> None:
        table = Grant.__table__
        with session_on(self.bind, commit=True) as session:
            grants = [(GrantRecord("group", group_id, "member", "user", user_id), "group")]
            apps = self._live_grants(session, table.c.source == "app", table.c.principal_type == "group",
                                     table.c.principal_id == group_id)
            grants += [(GrantRecord("app", app_id, "access", "user", user_id, via=group_id), "app_via_group")
                       for app_id, _ in apps]
            self._set_grants(session, grants, present)

    def app_access(self, app_id: str, principal_type: str, principal_id: str, present: bool) -> None:
        table = Grant.__table__
        with session_on(self.bind, commit=True) as session:
            grants = [(GrantRecord("app", app_id, "access", principal_type, principal_id), "app")]
            if principal_type == "group":
                members = self._live_grants(session, table.c.source == "group",
                                            table.c.resource_id == principal_id)
                grants += [(GrantRecord("app", app_id, "access", "user", user_id, via=principal_id),
                            "app_via_group") for _, user_id in members]
            self._set_grants(session, grants, present)

    def _upsert(self, session: Session, record: ResourceRecord) -> None:
        table = Resource.__table__
        now = utcnow()
        old = session.execute(select(table.c.name, table.c.email, table.c.status, table.c.profile, table.c.deleted_at)
                              .where(table.c.connector_id == self.connector_id, table.c.type == record.type,
                                     table.c.external_id == record.id)).mappings().first()
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
        with session_on(self.bind, commit=True) as session:
            self._upsert(session, user)
        return user

    def user_deleted(self, user_id: str) -> None:
        """The account and every grant it held are gone."""
        now = utcnow()
        resources, grants = Resource.__table__, Grant.__table__
        with session_on(self.bind, commit=True) as session:
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
        table = Grant.__table__
        with session_on(self.bind, commit=True) as session:
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
        table = Resource.__table__
        exists = session.execute(select(table.c.id).where(
            table.c.connector_id == self.connector_id, table.c.type == "role",
            table.c.external_id == role_id(role.name), table.c.deleted_at.is_(None))).first()
        if exists is None:
            self._upsert(session, role)

