"""Provisioning's name resolution (provisioning/resolve.py) against the synced database alone (no client, as in a
dry run), on the access tests' tenant, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.resolve import AmbiguousName, Resolver, UnknownName
from tests.integration.test_access import build_tenant


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
