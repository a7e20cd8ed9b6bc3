"""The identity hygiene report: accounts, access and groups that need a look (docs/access.md, ``report``).

Seven checks (``FINDING_KINDS``), each a query of its own, run at once in threads. A finding names its subject,
what it relates to, the group it comes through, and why; the dict shape and ``REPORT_COLUMNS`` are a documented,
stable interface (add keys, never rename or remove them). "Live" is as in ``access.queries``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, and_, exists, func, select, text
from sqlmodel import Session

from access.collector import collector_paused
from access.queries import HELD_TYPES, G, R, live, ref
from models.bulk import chunks
from models.columns import iso
from models.names import lookup_key
from models.queries import connector_id

#: Statuses of users who should hold no application access.
INACTIVE_USER_STATUSES = ("suspended", "staged")

FINDING_KINDS = (
    "admin_without_user",
    "inactive_user_app_access",
    "admin_role_without_mfa",
    "empty_group_bound_to_app",
    "deleted_principal_granted",
    "provisioned_app_without_users",
    "app_access_not_provisioned",
)

REPORT_COLUMNS = (
    "kind", "subject_type", "subject_id", "subject_name", "related_type", "related_id", "related_name",
    "via_type", "via_id", "via_name", "detail",
)


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
                            u1.c.external_id == R.c.linked_user_id, live(u1))
    same_email = exists().where(u2.c.connector_id == R.c.connector_id, u2.c.type == "user",
                                u2.c.email_key == R.c.email_key, live(u2))
    rows = session.execute(select(R.c.external_id, R.c.name, R.c.email).where(
        R.c.connector_id == cid, R.c.type == "admin", live(), ~linked, ~same_email)).all()
    return _ordered([_finding("admin_without_user", ref("admin", r.external_id, r.name), None, None,
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
                      live(u), u.c.status.in_(INACTIVE_USER_STATUSES)))
        .where(G.c.connector_id == cid, G.c.resource_type == "app", G.c.principal_type == "user", live(G))).all()
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
                      live(u)))
        .join(G, and_(G.c.connector_id == a.c.connector_id, G.c.resource_type == "role", G.c.principal_type == "admin",
                      G.c.principal_id == a.c.external_id, live(G)))
        .join(role, and_(role.c.connector_id == G.c.connector_id, role.c.type == "role",
                         role.c.external_id == G.c.resource_id, live(role)))
        .where(a.c.connector_id == cid, a.c.type == "admin", live(a))).all()
    out = []
    for r in rows:
        mfa = (r.profile or {}).get("mfa_configured")
        if mfa is True:
            continue
        state = "not configured" if mfa is False else "unknown (not in the user record)"
        suspended = " (admin account suspended)" if r.admin_status == "suspended" else ""
        out.append(_finding("admin_role_without_mfa", ref("user", r.external_id, r.name),
                            ref("role", r.role_id, r.role_name), ref("admin", r.admin_id, r.admin_name),
                            f"user MFA {state}; holds role {r.role_name} through admin account "
                            f"{r.admin_id}{suspended}"))
    return _ordered(out)


def _empty_groups_bound_to_apps(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live groups directly bound to a live app that have no live member (a live membership of a live user)."""
    grp, app, m, mu = R.alias("grp"), R.alias("app"), G.alias("m"), R.alias("mu")
    has_member = exists().where(
        m.c.connector_id == G.c.connector_id, m.c.resource_type == "group", m.c.resource_id == G.c.principal_id,
        m.c.entitlement == "member", live(m),
        exists().where(mu.c.connector_id == m.c.connector_id, mu.c.type == m.c.principal_type,
                       mu.c.external_id == m.c.principal_id, live(mu)))
    rows = session.execute(
        select(grp.c.external_id, grp.c.name, app.c.external_id.label("app_id"), app.c.name.label("app_name"))
        .select_from(G)
        .join(grp, and_(grp.c.connector_id == G.c.connector_id, grp.c.type == "group",
                        grp.c.external_id == G.c.principal_id, live(grp)))
        .join(app, and_(app.c.connector_id == G.c.connector_id, app.c.type == "app",
                        app.c.external_id == G.c.resource_id, live(app)))
        .where(G.c.connector_id == cid, G.c.resource_type == "app", G.c.principal_type == "group", G.c.via == "",
               live(G), ~has_member)).all()
    return _ordered([_finding("empty_group_bound_to_app", ref("group", r.external_id, r.name),
                              ref("app", r.app_id, r.app_name), None,
                              "the group is bound to the app but has no live members")
                     for r in rows])


def _deleted_principals_granted(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live grants whose principal is deleted in JumpCloud, or absent from the database.

    Not one join over every grant (a B-tree search per grant on SQLite; a hash of the whole resources table on
    PostgreSQL), but the few principals concerned first: deleted ones
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
            .where(G.c.connector_id == cid, G.c.principal_id.in_(chunk), live(G))).all()
        for ptype, pid, rtype, rid, entitlement, via in rows:
            if (ptype, pid) in deleted:
                name, deleted_at = deleted[(ptype, pid)]
                gone = f"deleted in JumpCloud at {iso(deleted_at)}"
            elif pid in missing:
                name, gone = None, "not in the database (never synced)"
            else:
                continue
            resource_name = names.name(rtype, rid)
            out.append(_finding("deleted_principal_granted", ref(ptype, pid, name),
                                ref(rtype, rid, resource_name), ref("group", via, names.name("group", via)),
                                f"{ptype} {gone}, still holds {entitlement} on {rtype} {resource_name or rid}"))
    return _ordered(out)


def _missing_principals(session: Session, cid: int) -> set[str]:
    """Ids of the principals that grants name and no resource row has.

    An EXCEPT of two index-only scans (grants' principal ids, resources' ids), on the id alone: JumpCloud ids
    are ObjectIds, unique across types. SQLite has no hash join (an anti-join is a B-tree search per grant,
    the EXCEPT a merge of two sorted scans); on PostgreSQL it is as fast as the hash anti-join on (type, id)
    it replaces, and faster with the report's ``work_mem``.
    """
    return set(session.execute(select(G.c.principal_id).where(G.c.connector_id == cid).except_(
        select(R.c.external_id).where(R.c.connector_id == cid))).scalars())


def _apps_by_provisioning(session: Session, cid: int) -> dict[str, list[tuple[str, str, str]]]:
    """Live apps by their ``provisioning`` (``connector.apps.provisioning_of``): ``"provisioned"`` (SCIM or another
    type: (id, name, type)) and ``"none"`` (JumpCloud says it provisions nothing); apps whose provisioning is
    unknown (the v2 listing was refused) are in neither."""
    out: dict[str, list[tuple[str, str, str]]] = {"provisioned": [], "none": []}
    for rid, name, profile in session.execute(select(R.c.external_id, R.c.name, R.c.profile).where(
            R.c.connector_id == cid, R.c.type == "app", live())):
        kind = (profile or {}).get("provisioning")
        if isinstance(kind, str):
            out["none" if kind == "none" else "provisioned"].append((rid, name, kind))
    return out


def _users_with_access(session: Session, cid: int, app_ids: list[str]) -> dict[str, int]:
    """App id -> how many live users hold live access to it (directly or through a group)."""
    u = R.alias("u")
    counts: dict[str, int] = {}
    for chunk in chunks(sorted(app_ids)):
        for app_id, holders in session.execute(
                select(G.c.resource_id, func.count(G.c.principal_id.distinct())).select_from(G)
                .join(u, and_(u.c.connector_id == G.c.connector_id, u.c.type == "user",
                              u.c.external_id == G.c.principal_id, live(u)))
                .where(G.c.connector_id == cid, G.c.resource_type == "app", G.c.principal_type == "user",
                       G.c.resource_id.in_(chunk), live(G)).group_by(G.c.resource_id)):
            counts[app_id] = holders
    return counts


def _provisioned_apps_without_users(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live apps JumpCloud provisions users into (Identity Management: SCIM) that no live user has access to: an
    integration kept for nobody, or access bound to the wrong group."""
    apps = _apps_by_provisioning(session, cid)["provisioned"]
    holders = _users_with_access(session, cid, [rid for rid, _, _ in apps])
    return _ordered([_finding("provisioned_app_without_users", ref("app", rid, name), None, None,
                              f"JumpCloud provisions users into the app ({kind}) but no live user has access")
                     for rid, name, kind in apps if not holders.get(rid)])


def _app_access_not_provisioned(session: Session, cid: int, names: _Names) -> list[dict]:
    """Live apps that live users have access to and that JumpCloud does not provision: their accounts in the app
    outlive a revocation here. One finding per app (not per user: the export lists each grant with the app's
    provisioning)."""
    apps = _apps_by_provisioning(session, cid)["none"]
    holders = _users_with_access(session, cid, [rid for rid, _, _ in apps])
    return _ordered([_finding("app_access_not_provisioned", ref("app", rid, name), None, None,
                              f"{holders[rid]} live user{' has' if holders[rid] == 1 else 's have'} access; JumpCloud "
                              "does not provision the app (no Identity Management), so removing access here does "
                              "not remove their accounts there")
                     for rid, name, _ in apps if holders.get(rid)])


_CHECKS = {
    "admin_without_user": _admins_without_user,
    "inactive_user_app_access": _inactive_users_with_app_access,
    "admin_role_without_mfa": _admin_roles_without_mfa,
    "empty_group_bound_to_app": _empty_groups_bound_to_apps,
    "deleted_principal_granted": _deleted_principals_granted,
    "provisioned_app_without_users": _provisioned_apps_without_users,
    "app_access_not_provisioned": _app_access_not_provisioned,
}

#: PostgreSQL's memory for one sort or hash of the report (default 4MB): the missing-principal EXCEPT then
#: hashes in memory instead of sorting the ids on disk. Set for the report's transactions only.
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
        found = dict(zip(FINDING_KINDS, pool.map(lambda kind: _check(engine, cid, kind), FINDING_KINDS), strict=True))
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
