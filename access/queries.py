"""Who holds what and why, answered from the synced database alone (no JumpCloud call; docs/access.md).

Two questions: a person's effective access (``access``) and everyone holding one group, app or role
(``who_has``); the report is ``access.report``, the export ``access.export``. The dict shapes are a documented,
stable interface: add keys, never rename or remove them.

"Live" means ``deleted_at IS NULL``. Listings show live grants on live resources; the principal of a live
grant may itself be deleted or missing, which is what the report's ``deleted_principal_granted`` finds.
Names, emails and usernames are compared case-folded through the ``name_key``/``email_key``/``username_key``
columns, which the store fills with Python's ``casefold`` (SQLite's ``lower()`` folds ASCII only).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, and_, null, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from models.names import lookup_key
from models.queries import connector_id
from models.resolver import candidate, resolve, resolve_person
from models.tables import Grant, Resource, table_of

# SQLModel's stubs do not declare __table__.
R: Table = table_of(Resource)
G: Table = table_of(Grant)

#: Resource types ``who_has`` answers for, and the order ``access`` lists holdings in.
HELD_TYPES = ("group", "app", "role")
_PRINCIPAL_ORDER = {"user": 0, "admin": 1, "group": 2}


def ref(kind: str, rid: str | None, name: str | None) -> dict[str, Any] | None:
    """A reference to a resource as the JSON interface shows it; None when there is no id."""
    return None if not rid else {"type": kind, "id": rid, "name": name}


def live(table=R) -> ColumnElement[bool]:
    """The row is not marked deleted."""
    return table.c.deleted_at.is_(None)


# --- effective access --------------------------------------------------------------------------------------------

def access(engine: Engine, connector: str, query: str) -> dict[str, Any]:
    """Every group, app and role the person holds through their user and admin accounts, one entry per path."""
    with Session(engine) as session:
        cid = connector_id(session, connector)
        user, admins = resolve_person(session, cid, query)
        accounts = ([("user", user.external_id)] if user is not None else []) + [("admin", a.external_id)
                                                                                  for a in admins]
        res, via = R.alias("res"), R.alias("via")
        rows = session.execute(
            select(G.c.resource_type, G.c.resource_id, res.c.name, G.c.entitlement, G.c.via,
                   via.c.name.label("via_name"), G.c.principal_type, G.c.principal_id)
            .join(res, and_(res.c.connector_id == G.c.connector_id, res.c.type == G.c.resource_type,
                            res.c.external_id == G.c.resource_id, live(res)))
            .outerjoin(via, and_(via.c.connector_id == G.c.connector_id, via.c.type == "group",
                                 via.c.external_id == G.c.via))
            .where(G.c.connector_id == cid, live(G),
                   G.c.principal_id.in_([rid for _, rid in accounts]))).all()
    wanted = set(accounts)
    entries = [{"type": r.resource_type, "id": r.resource_id, "name": r.name, "entitlement": r.entitlement,
                "via": ref("group", r.via, r.via_name), "account": {"type": r.principal_type, "id": r.principal_id}}
               for r in rows if (r.principal_type, r.principal_id) in wanted]
    entries.sort(key=lambda e: (HELD_TYPES.index(e["type"]) if e["type"] in HELD_TYPES else 9,
                                lookup_key(e["name"] or ""), e["id"], e["via"] is not None,
                                lookup_key((e["via"] or {}).get("name") or ""), (e["via"] or {}).get("id") or "",
                                _PRINCIPAL_ORDER.get(e["account"]["type"], 9), e["account"]["id"]))
    return {"connector": connector, "query": query,
            "person": {"user": candidate(user) if user is not None else None,
                       "admins": [candidate(a) for a in admins]},
            "access": entries}


# --- who has it -------------------------------------------------------------------------------------------------

def parse_target(target: str) -> tuple[str, str]:
    """``app:NAME`` → ("app", "NAME"); ValueError for anything else."""
    kind, sep, name = target.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in HELD_TYPES or not name.strip():
        raise ValueError(f"{target!r} is not app:NAME, group:NAME or role:NAME (NAME may be an id)")
    return kind, name.strip()


def who_has(engine: Engine, connector: str, target: str) -> dict[str, Any]:
    """Everyone holding the group, app or role, and how: direct or through which group. For a role, each admin
    with their linked user; for an app bound to a group, the group itself and each member through it."""
    resource_type, name = parse_target(target)
    with Session(engine) as session:
        cid = connector_id(session, connector)
        resource = resolve(session.connection(), cid, resource_type, name)
        p, via, linked = R.alias("p"), R.alias("via"), R.alias("linked")
        query = (select(G.c.entitlement, G.c.principal_type, G.c.principal_id, G.c.via, p.c.name, p.c.email,
                        p.c.status, p.c.id, p.c.deleted_at)
                 .outerjoin(p, and_(p.c.connector_id == G.c.connector_id, p.c.type == G.c.principal_type,
                                    p.c.external_id == G.c.principal_id))
                 .where(G.c.connector_id == cid, G.c.resource_type == resource_type,
                        G.c.resource_id == resource.external_id, live(G)))
        # Only apps have access through groups and only roles have admins: a 50k-member group needs neither join.
        if resource_type == "app":
            query = query.add_columns(via.c.name).outerjoin(
                via, and_(via.c.connector_id == G.c.connector_id, via.c.type == "group", via.c.external_id == G.c.via))
        else:
            query = query.add_columns(null())
        if resource_type == "role":
            query = query.add_columns(linked.c.external_id, linked.c.name, linked.c.email, linked.c.status,
                                      linked.c.profile).outerjoin(
                linked, and_(linked.c.connector_id == G.c.connector_id, linked.c.type == "user",
                             linked.c.external_id == p.c.linked_user_id, live(linked)))
        else:
            query = query.add_columns(null(), null(), null(), null(), null())
        rows = session.execute(query).all()
    keyed = []
    for (entitlement, ptype, pid, via_id, name, email, status, row_id, deleted_at, via_name,
         l_id, l_name, l_email, l_status, l_profile) in rows:  # tuples: a 50k-member group is 50k rows
        linked_user = None
        if ptype == "admin" and l_id is not None:
            linked_user = {"type": "user", "id": l_id, "name": l_name, "email": l_email, "status": l_status,
                           "username": (l_profile or {}).get("username")}
        holder = {
            "principal": {"type": ptype, "id": pid, "name": name, "email": email, "status": status,
                          "deleted": row_id is None or deleted_at is not None},
            "entitlement": entitlement,
            "via": {"type": "group", "id": via_id, "name": via_name} if via_id else None,
            "linked_user": linked_user,
        }
        keyed.append(((_PRINCIPAL_ORDER.get(ptype, 9), lookup_key(name or ""), pid, bool(via_id),
                       lookup_key(via_name or ""), via_id), holder))
    keyed.sort(key=lambda pair: pair[0])
    holders = [holder for _, holder in keyed]
    return {"connector": connector,
            "resource": {"type": resource.type, "id": resource.external_id, "name": resource.name},
            "holders": holders}
