"""Access insight: who holds what and why, answered from the synced database alone (no JumpCloud call).

Four questions (docs/access.md): a person's effective access (``access``), everyone holding one group, app or
role (``who_has``), an identity hygiene report (``report``) and an access review export (``iter_export``, in
access.export).
The dict shapes are a documented, stable interface: add keys, never rename or remove them.

"Live" means ``deleted_at IS NULL``. Listings show live grants on live resources; the principal of a live
grant may itself be deleted or missing, which is what the report's ``deleted_principal_granted`` finds.
Names, emails and usernames are compared case-folded through the ``name_key``/``email_key``/``username_key``
columns, which the store fills with Python's ``casefold`` (SQLite's ``lower()`` folds ASCII only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, and_, exists, null, select, text
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from access.collector import collector_paused
from access.export import EXPORT_COLUMNS, export, iter_export  # noqa: F401  (part of this module's interface)
from access.export import iso_utc as _iso
from models.queries import connector_id
from models.resolver import Ambiguous, NotFound, candidate, resolve, resolve_person  # noqa: F401  (interface)
from models.names import lookup_key
from models.store import chunks
from models.tables import Grant, Resource

R = Resource.__table__
G = Grant.__table__

#: Resource types ``who_has`` answers for, and the order ``access`` lists holdings in.
HELD_TYPES = ("group", "app", "role")
_PRINCIPAL_ORDER = {"user": 0, "admin": 1, "group": 2}
#: Statuses of users who should hold no application access.
INACTIVE_USER_STATUSES = ("suspended", "staged")

FINDING_KINDS = (
    "admin_without_user",
    "inactive_user_app_access",
    "admin_role_without_mfa",
    "empty_group_bound_to_app",
    "deleted_principal_granted",
)

REPORT_COLUMNS = (
    "kind", "subject_type", "subject_id", "subject_name", "related_type", "related_id", "related_name",
    "via_type", "via_id", "via_name", "detail",
)


def _ref(kind: str, rid: str | None, name: str | None) -> dict[str, Any] | None:
    return None if not rid else {"type": kind, "id": rid, "name": name}


def _live(table=R) -> ColumnElement[bool]:
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
                            res.c.external_id == G.c.resource_id, _live(res)))
            .outerjoin(via, and_(via.c.connector_id == G.c.connector_id, via.c.type == "group",
                                 via.c.external_id == G.c.via))
            .where(G.c.connector_id == cid, _live(G),
                   G.c.principal_id.in_([rid for _, rid in accounts]))).all()
    wanted = set(accounts)
    entries = [{"type": r.resource_type, "id": r.resource_id, "name": r.name, "entitlement": r.entitlement,
                "via": _ref("group", r.via, r.via_name), "account": {"type": r.principal_type, "id": r.principal_id}}
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
        resource = resolve(session, cid, resource_type, name)
        p, via, linked = R.alias("p"), R.alias("via"), R.alias("linked")
        query = (select(G.c.entitlement, G.c.principal_type, G.c.principal_id, G.c.via, p.c.name, p.c.email,
                        p.c.status, p.c.id, p.c.deleted_at)
                 .outerjoin(p, and_(p.c.connector_id == G.c.connector_id, p.c.type == G.c.principal_type,
                                    p.c.external_id == G.c.principal_id))
                 .where(G.c.connector_id == cid, G.c.resource_type == resource_type,
                        G.c.resource_id == resource.external_id, _live(G)))
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
                             linked.c.external_id == p.c.linked_user_id, _live(linked)))
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


# --- identity hygiene report ------------------------------------------------------------------------------------

def _finding(kind: str, subject: dict | None, related: dict | None, via: dict | None, detail: str) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "related": related, "via": via, "detail": detail}


_NO_REF = ("", "", "")


def _finding_order(f: dict) -> tuple:
    """Findings are ordered by subject, then related, then via: each by type, case-folded name, id."""
    def ref(value: dict | None) -> tuple:
        return _NO_REF if value is None else (value["type"], lookup_key(value["name"] or ""), value["id"])

    return (ref(f["subject"]), ref(f["related"]), ref(f["via"]))


def _ordered(findings: list[dict]) -> list[dict]:
    return sorted(findings, key=_finding_order)


class _Names:
    """The names of a connector's groups, apps and roles (live or deleted), each type read once per report.

    The checks with many findings join these in Python rather than joining ``resources`` again per finding:
    a few thousand rows read once instead of an index search (SQLite) or a hash of the table (PostgreSQL) per
    query."""

    def __init__(self, session: Session, cid: int) -> None:
        self.session, self.cid = session, cid
        self._by_type: dict[str, dict[str, tuple[str, bool]]] = {}

    def of(self, kind: str) -> dict[str, tuple[str, bool]]:
        """id -> (name, live) for every resource of that type."""
        if kind not in self._by_type:
            self._by_type[kind] = {rid: (name, deleted_at is None) for rid, name, deleted_at in self.session.execute(
                select(R.c.external_id, R.c.name, R.c.deleted_at).where(R.c.connector_id == self.cid,
                                                                         R.c.type == kind))}
        return self._by_type[kind]

    def name(self, kind: str, rid: str) -> str | None:
        found = self.of(kind).get(rid) if kind in HELD_TYPES else None
        return found[0] if found else None


def _admins_without_user(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live admins with no live user account: neither the linked one nor one with the same email."""
    u1, u2 = R.alias("u1"), R.alias("u2")
    linked = exists().where(u1.c.connector_id == R.c.connector_id, u1.c.type == "user",
                            u1.c.external_id == R.c.linked_user_id, _live(u1))
    same_email = exists().where(u2.c.connector_id == R.c.connector_id, u2.c.type == "user",
                                u2.c.email_key == R.c.email_key, _live(u2))
    rows = session.execute(select(R.c.external_id, R.c.name, R.c.email).where(
        R.c.connector_id == cid, R.c.type == "admin", _live(), ~linked, ~same_email)).all()
    return _ordered([_finding("admin_without_user", _ref("admin", r.external_id, r.name), None, None,
                              f"no live user account with the admin's email ({r.email})" if r.email
                              else "the admin account has no email, so no user account matches")
                     for r in rows])


def _inactive_users_with_app_access(session: Session, cid: int, names: _Names) -> list[dict]:
    """Suspended or staged users holding live access to a live app, one finding per path.

    Most findings are these (25k at xl): one join reads the grants of inactive users, app and group names come
    from ``names``, and the order is computed once per row with each name folded once.
    """
    u = R.alias("u")
    rows = session.execute(
        select(u.c.external_id, u.c.name, u.c.status, G.c.resource_id, G.c.via).select_from(G)
        .join(u, and_(u.c.connector_id == G.c.connector_id, u.c.type == "user", u.c.external_id == G.c.principal_id,
                      _live(u), u.c.status.in_(INACTIVE_USER_STATUSES)))
        .where(G.c.connector_id == cid, G.c.resource_type == "app", G.c.principal_type == "user", _live(G))).all()
    apps, groups = names.of("app"), names.of("group")
    fold = lru_cache(maxsize=None)(lookup_key)
    keyed = []
    for uid, user_name, status, app_id, via in rows:
        app_name, app_live = apps.get(app_id, (None, False))
        if not app_live:
            continue
        via_name = groups[via][0] if via in groups else None
        # _finding_order flattened: subject and related types are fixed here, and a direct grant's via ("")
        # sorts before any group.
        order = (fold(user_name or ""), uid, fold(app_name or ""), app_id, bool(via), fold(via_name or ""), via)
        keyed.append((order, uid, user_name, status, app_id, app_name, via, via_name))
    keyed.sort(key=itemgetter(0))
    return [{"kind": "inactive_user_app_access", "subject": {"type": "user", "id": uid, "name": user_name},
             "related": {"type": "app", "id": app_id, "name": app_name},
             "via": {"type": "group", "id": via, "name": via_name} if via else None,
             "detail": f"{status} user holds access " + (f"through group {via_name or via}" if via else "directly")}
            for _, uid, user_name, status, app_id, app_name, via, via_name in keyed]


def _admin_roles_without_mfa(session: Session, cid: int, names: _Names) -> list[dict]:
    """Users whose MFA is not configured (false or missing) and whose linked admin account holds a role."""
    u, a, role = R.alias("u"), R.alias("a"), R.alias("role")
    rows = session.execute(
        select(u.c.external_id, u.c.name, u.c.profile, a.c.external_id.label("admin_id"), a.c.name.label("admin_name"),
               a.c.status.label("admin_status"), role.c.external_id.label("role_id"), role.c.name.label("role_name"))
        .select_from(a)
        .join(u, and_(u.c.connector_id == a.c.connector_id, u.c.type == "user", u.c.external_id == a.c.linked_user_id,
                      _live(u)))
        .join(G, and_(G.c.connector_id == a.c.connector_id, G.c.resource_type == "role", G.c.principal_type == "admin",
                      G.c.principal_id == a.c.external_id, _live(G)))
        .join(role, and_(role.c.connector_id == G.c.connector_id, role.c.type == "role",
                         role.c.external_id == G.c.resource_id, _live(role)))
        .where(a.c.connector_id == cid, a.c.type == "admin", _live(a))).all()
    out = []
    for r in rows:
        mfa = (r.profile or {}).get("mfa_configured")
        if mfa is True:
            continue
        state = "not configured" if mfa is False else "unknown (not in the user record)"
        suspended = " (admin account suspended)" if r.admin_status == "suspended" else ""
        out.append(_finding("admin_role_without_mfa", _ref("user", r.external_id, r.name),
                            _ref("role", r.role_id, r.role_name), _ref("admin", r.admin_id, r.admin_name),
                            f"user MFA {state}; holds role {r.role_name} through admin account "
                            f"{r.admin_id}{suspended}"))
    return _ordered(out)


def _empty_groups_bound_to_apps(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live groups directly bound to a live app that have no live member (a live membership of a live user)."""
    grp, app, m, mu = R.alias("grp"), R.alias("app"), G.alias("m"), R.alias("mu")
    has_member = exists().where(
        m.c.connector_id == G.c.connector_id, m.c.resource_type == "group", m.c.resource_id == G.c.principal_id,
        m.c.entitlement == "member", _live(m),
        exists().where(mu.c.connector_id == m.c.connector_id, mu.c.type == m.c.principal_type,
                       mu.c.external_id == m.c.principal_id, _live(mu)))
    rows = session.execute(
        select(grp.c.external_id, grp.c.name, app.c.external_id.label("app_id"), app.c.name.label("app_name"))
        .select_from(G)
        .join(grp, and_(grp.c.connector_id == G.c.connector_id, grp.c.type == "group",
                        grp.c.external_id == G.c.principal_id, _live(grp)))
        .join(app, and_(app.c.connector_id == G.c.connector_id, app.c.type == "app",
                        app.c.external_id == G.c.resource_id, _live(app)))
        .where(G.c.connector_id == cid, G.c.resource_type == "app", G.c.principal_type == "group", G.c.via == "",
               _live(G), ~has_member)).all()
    return _ordered([_finding("empty_group_bound_to_app", _ref("group", r.external_id, r.name),
                              _ref("app", r.app_id, r.app_name), None,
                              "the group is bound to the app but has no live members")
                     for r in rows])


def _deleted_principals_granted(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live grants whose principal is deleted in JumpCloud, or absent from the database.

    Not one join over every grant (a B-tree search per grant on SQLite: 0.6s for 176k grants; a hash of the
    whole resources table on PostgreSQL: 0.3s at xl), but the few principals concerned first: deleted ones
    through the (connector, type, deleted_at) index, then the missing ones (``_missing_principals``); only their
    grants are read, and resource and group names come from ``names``.
    """
    deleted: dict[tuple[str, str], tuple[str, datetime]] = {}
    for kind in ("user", "admin", "group"):
        for rid, name, deleted_at in session.execute(select(R.c.external_id, R.c.name, R.c.deleted_at).where(
                R.c.connector_id == cid, R.c.type == kind, R.c.deleted_at.is_not(None))):
            deleted[(kind, rid)] = (name, deleted_at)
    missing = _missing_principals(session, cid)
    candidates = sorted({rid for _, rid in deleted} | missing)
    out = []
    for chunk in chunks(candidates):
        rows = session.execute(
            select(G.c.principal_type, G.c.principal_id, G.c.resource_type, G.c.resource_id, G.c.entitlement, G.c.via)
            .where(G.c.connector_id == cid, G.c.principal_id.in_(chunk), _live(G))).all()
        for ptype, pid, rtype, rid, entitlement, via in rows:
            if (ptype, pid) in deleted:
                name, deleted_at = deleted[(ptype, pid)]
                gone = f"deleted in JumpCloud at {_iso(deleted_at)}"
            elif pid in missing:
                name, gone = None, "not in the database (never synced)"
            else:
                continue
            resource_name = names.name(rtype, rid)
            out.append(_finding("deleted_principal_granted", _ref(ptype, pid, name),
                                _ref(rtype, rid, resource_name), _ref("group", via, names.name("group", via)),
                                f"{ptype} {gone}, still holds {entitlement} on {rtype} {resource_name or rid}"))
    return _ordered(out)


def _missing_principals(session: Session, cid: int) -> set[str]:
    """Ids of the principals that grants name and no resource row has.

    An EXCEPT of two index-only scans (grants' principal ids, resources' ids), on the id alone: JumpCloud ids
    are ObjectIds, unique across types. SQLite has no hash join (an anti-join is a B-tree search per grant,
    0.45s at 176k grants; the EXCEPT 0.07s); on PostgreSQL it is as fast as the hash anti-join on (type, id)
    it replaces (0.2s at xl), and faster with the report's ``work_mem``.
    """
    return set(session.execute(select(G.c.principal_id).where(G.c.connector_id == cid).except_(
        select(R.c.external_id).where(R.c.connector_id == cid))).scalars())


_CHECKS = {
    "admin_without_user": _admins_without_user,
    "inactive_user_app_access": _inactive_users_with_app_access,
    "admin_role_without_mfa": _admin_roles_without_mfa,
    "empty_group_bound_to_app": _empty_groups_bound_to_apps,
    "deleted_principal_granted": _deleted_principals_granted,
}

#: PostgreSQL's memory for one sort or hash of the report (default 4MB): the missing-principal EXCEPT then
#: hashes in memory instead of sorting 600k ids on disk (0.20s → 0.13s at xl). Set for the report's
#: transactions only.
REPORT_WORK_MEM = "64MB"


def report(engine: Engine, connector: str) -> dict[str, Any]:
    """The identity hygiene findings, by kind (in ``FINDING_KINDS`` order), then by subject, related, via.

    The checks run at once, each in a thread with its own connection: most of their time is the database's
    (SQLite and psycopg release the GIL), so the report takes about as long as its slowest check. The cyclic
    garbage collector is paused meanwhile (``access.collector``): 25k findings at xl are 100k dicts.
    """
    with Session(engine) as session:
        cid = connector_id(session, connector)
    with collector_paused(), ThreadPoolExecutor(max_workers=len(FINDING_KINDS), thread_name_prefix="report") as pool:
        found = dict(zip(FINDING_KINDS, pool.map(lambda kind: _check(engine, cid, kind), FINDING_KINDS)))
    return {"connector": connector, "summary": {kind: len(found[kind]) for kind in FINDING_KINDS},
            "findings": [finding for kind in FINDING_KINDS for finding in found[kind]]}


def _check(engine: Engine, cid: int, kind: str) -> list[dict]:
    with Session(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        return _CHECKS[kind](session, cid, _Names(session, cid))


def finding_row(finding: dict[str, Any]) -> tuple:
    """A finding as a CSV row, in ``REPORT_COLUMNS`` order."""
    def parts(value: dict | None) -> tuple:
        return (None, None, None) if value is None else (value["type"], value["id"], value["name"])

    return (finding["kind"], *parts(finding["subject"]), *parts(finding["related"]), *parts(finding["via"]),
            finding["detail"])
