"""The write-through on its own, on SQLite and PostgreSQL: which grants it creates, brings back or ends, and the
change it records for each, also for more grants than one look-up takes (a group of 1,200 bound to an app)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from connector.records import GrantRecord
from models import history
from models.store import GrantWriter
from models.tables import Grant, utcnow
from provisioning.writethrough import WriteThrough
from tests.support.databases import add_connector, add_group_members

APP, GROUP = "a" * 24, "b" * 24
MEMBERS = [f"{i:024x}" for i in range(1200)]


def _grants(engine, cid: int) -> dict[tuple, bool]:
    """(resource, principal, via) -> live, for the app's grants."""
    table = Grant.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.resource_id, table.c.principal_id, table.c.via, table.c.deleted_at)
                                  .where(table.c.connector_id == cid, table.c.resource_type == "app"))
        return {(r.resource_id, r.principal_id, r.via): r.deleted_at is None for r in rows}


def _members(engine, cid: int, group: str) -> set[str]:
    """The group's live members."""
    table = Grant.__table__
    with engine.connect() as connection:
        return set(connection.execute(select(table.c.principal_id).where(
            table.c.connector_id == cid, table.c.resource_id == group, table.c.deleted_at.is_(None))).scalars())


def _recorded(engine, request_id: str) -> Counter:
    return Counter((c["change"], c["principal_type"]) for c in history.changes(engine, "acme")
                   if c["request_id"] == request_id)


def test_group_access_to_an_app_for_many_members(engine):
    cid = add_connector(engine)
    add_group_members(engine, cid, GROUP, MEMBERS)

    WriteThrough(engine, cid, "grant-1").app_access(APP, "group", GROUP, present=True)
    grants = _grants(engine, cid)
    assert len(grants) == 1 + len(MEMBERS) and all(grants.values())
    assert grants[(APP, MEMBERS[700], GROUP)]
    assert _recorded(engine, "grant-1") == {("created", "group"): 1, ("created", "user"): len(MEMBERS)}

    WriteThrough(engine, cid, "grant-2").app_access(APP, "group", GROUP, present=True)  # already so
    assert _recorded(engine, "grant-2") == {}

    WriteThrough(engine, cid, "revoke").app_access(APP, "group", GROUP, present=False)
    grants = _grants(engine, cid)
    assert len(grants) == 1 + len(MEMBERS) and not any(grants.values())
    assert _recorded(engine, "revoke") == {("deleted", "group"): 1, ("deleted", "user"): len(MEMBERS)}

    WriteThrough(engine, cid, "revoke-again").app_access(APP, "group", GROUP, present=False)
    assert _recorded(engine, "revoke-again") == {}

    WriteThrough(engine, cid, "grant-3").app_access(APP, "group", GROUP, present=True)
    assert all(_grants(engine, cid).values())
    assert _recorded(engine, "grant-3") == {("undeleted", "group"): 1, ("undeleted", "user"): len(MEMBERS)}



def test_a_sync_part_never_undoes_a_write_through_newer_than_its_listing(engine):
    """A full sync lists a group while provisioning changes it: an add written through after the part began is
    not deleted for missing from the (older) listing, and a removal written through then is not brought back
    for being in it. Rows the write-through set before the part began are the sync's to settle, as any."""
    cid = add_connector(engine)
    add_group_members(engine, cid, "g1", ["u-kept", "u-removed", "u-gone"])  # an earlier sync
    listing_began = utcnow()
    WriteThrough(engine, cid, request_id="r-add").group_member("g1", "u-added", present=True)
    WriteThrough(engine, cid, request_id="r-remove").group_member("g1", "u-removed", present=False)
    # The part's listing was read before both changes: it has u-removed, not u-added; u-gone left JumpCloud.
    part = GrantWriter(engine, cid, "group", "group", listing_began)
    part.write_scopes({"g1": [GrantRecord("group", "g1", "member", "user", user) for user in ("u-kept", "u-removed")]})
    part.apply_deletions()
    assert _members(engine, cid, "g1") == {"u-kept", "u-added"}  # u-gone deleted; u-added and the removal kept
    assert [c["change"] for c in history.changes(engine, "acme") if c["principal_id"] == "u-removed"] == ["deleted"]

    later = GrantWriter(engine, cid, "group", "group", utcnow())  # the next sync, after the changes
    later.write_scopes({"g1": [GrantRecord("group", "g1", "member", "user", user) for user in ("u-kept",)]})
    later.apply_deletions()
    assert _members(engine, cid, "g1") == {"u-kept"}
