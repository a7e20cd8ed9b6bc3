"""Provisioning's name resolution (provisioning/resolve.py) against the synced database alone (no client, as in a
dry run), on the access tests' tenant, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from models.tables import Resource
from provisioning.resolve import AmbiguousName, Resolver, UnknownName
from tests.support.access_tenant import build_tenant


@pytest.fixture
def resolver(engine):
    return Resolver(engine, build_tenant(engine), client=None)


@pytest.mark.parametrize("ref", ["alice", "ALICE", " Alice ", "alice@example.com"])
def test_a_user_by_username_or_email(resolver, ref):
    assert asyncio.run(resolver.user(ref)) == "u-alice"


def test_usernames_are_case_folded_so_two_that_differ_in_case_are_ambiguous(resolver):
    with pytest.raises(AmbiguousName, match="u-sam1, u-sam2"):
        asyncio.run(resolver.user("sam"))


def test_deleted_or_unknown_users_are_not_in_the_database(resolver):
    for ref in ("erin", "nobody"):
        with pytest.raises(UnknownName, match="not in the synced database"):
            asyncio.run(resolver.user(ref))


def test_id_references_are_looked_up_together(engine):
    """A membership's group and user, named by id, cost one query between them; a deleted one is not found."""
    from sqlalchemy import event
    from sqlmodel import Session

    from connector.records import ResourceRecord
    from models.store import resource_row, upsert_resource_rows
    from models.tables import utcnow
    from provisioning.params import GroupMemberParams

    cid = build_tenant(engine)
    group, user, gone = "a" * 24, "b" * 24, "c" * 24
    with Session(engine) as session:
        upsert_resource_rows(session, [resource_row(cid, ResourceRecord(kind, rid, name), utcnow()) for kind, rid, name
                                       in (("group", group, "G"), ("user", user, "u"), ("user", gone, "gone"))])
        session.commit()
        session.execute(Resource.__table__.update().where(Resource.__table__.c.external_id == gone)
                        .values(deleted_at=utcnow()))
        session.commit()
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    resolver = Resolver(engine, cid, client=None)
    resolver.prefetch_ids(GroupMemberParams(group=group, user=user))
    assert asyncio.run(resolver.group(group)) == group and asyncio.run(resolver.user(user)) == user
    assert len(statements) == 1
    resolver.prefetch_ids(GroupMemberParams(group=group, user=gone))
    with pytest.raises(UnknownName, match="not in the synced database"):
        asyncio.run(resolver.user(gone))
    assert len(statements) == 2
