"""The write-through on its own, on SQLite and PostgreSQL: which grants it creates, brings back or ends, and the
change it records for each, also for more grants than one look-up takes (a group of 1,200 bound to an app)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from models import history
from models.tables import Grant
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

