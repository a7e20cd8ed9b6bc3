"""A hand-built tenant whose access answers are known, for the access insight tests.

The tenant:

- Alice: user ``u-alice`` (Alice@Example.com) and admin ``a-alice`` (alice@EXAMPLE.COM, linked), role
  Administrator; member of Engineering and Operations; GitHub directly and through both groups. Her direct
  Slack grant was deleted.
- Bob: suspended, Slack directly. Carol: staged, GitHub through Engineering.
- Dave (MFA false) and Frank (no MFA field): users whose linked admin accounts hold Help Desk and Manager.
- Olga: admin only (Read Only), no user account.
- Erin: user deleted in JumpCloud, still granted Slack directly, Ghost Team membership and Wiki through it.
- ``u-missing``: never synced, still a member of Contractors.
- Wiki is bound to Empty Team (no members) and Ghost Team (only Erin). Two apps are named Docs.
- Two users have usernames ``sam`` and ``SAM``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import update
from sqlmodel import Session

from connector.records import GrantRecord, ResourceRecord
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, Grant, Resource

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIRST_SEEN = "2026-01-01T00:00:00+00:00"


def user_record(uid, name, email, status, username, mfa=True):
    profile = {"username": username}
    if mfa is not None:
        profile["mfa_configured"] = mfa
    return ResourceRecord("user", uid, name, email, status, profile)


USERS = [
    user_record("u-alice", "Alice Anders", "Alice@Example.com", "active", "alice"),
    user_record("u-bob", "Bob Brown", "bob@example.com", "suspended", "bob"),
    user_record("u-carol", "Carol Chen", "carol@example.com", "staged", "carol"),
    user_record("u-dave", "Dave Diaz", "dave@example.com", "active", "dave", mfa=False),
    user_record("u-frank", "Frank Fox", "frank@example.com", "active", "frank", mfa=None),
    user_record("u-erin", "Erin Ek", "erin@example.com", "active", "erin"),
    user_record("u-sam1", "Sam One", "sam.one@example.com", "active", "sam"),
    user_record("u-sam2", "Sam Two", "sam.two@example.com", "active", "SAM"),
]
#: admin id, name, email, linked user, role id
ADMINS = [
    ("a-alice", "Alice Anders", "alice@EXAMPLE.COM", "u-alice", "administrator"),
    ("a-dave", "Dave Diaz", "dave@example.com", "u-dave", "help-desk"),
    ("a-frank", "Frank Fox", "frank@example.com", "u-frank", "manager"),
    ("a-olga", "Olga Orr", "olga@example.com", None, "read-only"),
]
ROLES = {"administrator": "Administrator", "help-desk": "Help Desk", "manager": "Manager",
         "read-only": "Read Only", "billing-only": "Billing Only"}
GROUPS = {"g-eng": ("Engineering", ["u-alice", "u-carol"]), "g-ops": ("Operations", ["u-alice"]),
          "g-empty": ("Empty Team", []), "g-ghost": ("Ghost Team", ["u-erin"]),
          "g-contract": ("Contractors", ["u-missing"])}
#: app id: (name, direct users, bound groups)
APPS = {"app-github": ("GitHub", ["u-alice"], ["g-eng", "g-ops"]),
        "app-slack": ("Slack", ["u-bob", "u-erin", "u-alice"], []),
        "app-wiki": ("Wiki", [], ["g-empty", "g-ghost"]),
        "app-docs1": ("Docs", [], []), "app-docs2": ("docs", [], [])}
#: GitHub and the Wiki provision by SCIM (the Wiki's holders are all gone); Slack provisions nothing; Docs unknown.
PROVISIONING = {"app-github": {"provisioning": "scim"}, "app-wiki": {"provisioning": "scim"},
                "app-slack": {"provisioning": "none"}}


def build_tenant(engine) -> int:
    with Session(engine) as session:
        row = Connector(name="acme", base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        cid = row.id
    ResourceWriter(engine, cid, "user", NOW).write(USERS)
    ResourceWriter(engine, cid, "admin", NOW).write(
        [ResourceRecord("admin", aid, name, email, "active", {"role_names": [ROLES[role]]})
         for aid, name, email, _, role in ADMINS])
    ResourceWriter(engine, cid, "group", NOW).write(
        [ResourceRecord("group", gid, name) for gid, (name, _) in GROUPS.items()])
    ResourceWriter(engine, cid, "app", NOW).write(
        [ResourceRecord("app", aid, name, status="active", profile=PROVISIONING.get(aid, {}))
         for aid, (name, _, _) in APPS.items()])
    ResourceWriter(engine, cid, "role", NOW).write([ResourceRecord("role", rid, name) for rid, name in ROLES.items()])

    GrantWriter(engine, cid, "group", "group", NOW).write_scopes(
        {gid: [GrantRecord("group", gid, "member", "user", uid) for uid in members]
         for gid, (_, members) in GROUPS.items()})
    GrantWriter(engine, cid, "app", "app", NOW).write_scopes(
        {aid: [GrantRecord("app", aid, "access", "user", uid) for uid in users]
         + [GrantRecord("app", aid, "access", "group", gid) for gid in groups]
         for aid, (_, users, groups) in APPS.items()})
    GrantWriter(engine, cid, "app", "app_via_group", NOW).write_scopes(
        {aid: [GrantRecord("app", aid, "access", "user", uid, via=gid)
               for gid in groups for uid in GROUPS[gid][1]]
         for aid, (_, _, groups) in APPS.items()})
    GrantWriter(engine, cid, "role", "role", NOW).write_scopes(
        {rid: [GrantRecord("role", rid, "assigned", "admin", aid) for aid, *_, role in ADMINS if role == rid]
         for rid in ROLES})

    later = datetime(2026, 2, 1, tzinfo=timezone.utc)
    R, G = Resource.__table__, Grant.__table__
    with Session(engine) as session:
        for aid, _, _, linked, _ in ADMINS:
            session.execute(update(R).where(R.c.connector_id == cid, R.c.type == "admin", R.c.external_id == aid)
                            .values(linked_user_id=linked))
        session.execute(update(R).where(R.c.connector_id == cid, R.c.type == "user", R.c.external_id == "u-erin")
                        .values(deleted_at=later))
        session.execute(update(G).where(G.c.connector_id == cid, G.c.resource_id == "app-slack",
                                        G.c.principal_id == "u-alice").values(deleted_at=later))
        session.commit()
    return cid
