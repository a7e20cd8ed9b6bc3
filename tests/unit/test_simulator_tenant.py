"""The simulator's tenant generator and in-memory store: determinism, realism (untidy records), integrity."""

from __future__ import annotations

import re

import pytest

from simulator.model import OrderedIdSet
from simulator.tenant import BUILTIN_ROLES, Conflict, Missing, TenantSpec, generate_tenant

HEX24 = re.compile(r"^[0-9a-f]{24}$")
SPEC = TenantSpec(seed=42, users=600, admins=40, groups=30, apps=10, avg_members_per_group=12,
                  users_per_app=8, groups_per_app=3, admin_user_overlap=0.5)


@pytest.fixture(scope="module")
def tenant():
    return generate_tenant(SPEC)


def test_same_seed_same_tenant_and_different_seed_differs():
    a, b = generate_tenant(SPEC).dump(), generate_tenant(SPEC).dump()
    assert a == b
    c = generate_tenant(TenantSpec(**{**SPEC.__dict__, "seed": 43})).dump()
    assert c["org_id"] != a["org_id"]
    assert {u["_id"] for u in c["users"]}.isdisjoint({u["_id"] for u in a["users"]})
    assert [u["email"] for u in c["users"]] != [u["email"] for u in a["users"]]


def test_generation_does_not_touch_global_random():
    import random

    random.seed(5)
    expected = random.random()
    random.seed(5)
    generate_tenant(TenantSpec(seed=1, users=50))
    assert random.random() == expected


def test_counts_follow_the_spec(tenant):
    assert (len(tenant.users), len(tenant.admins), len(tenant.groups), len(tenant.apps)) == (600, 40, 30, 10)
    assert len(tenant.roles) == len(BUILTIN_ROLES) + len(SPEC.custom_roles)
    total_members = sum(len(m) for m in tenant.members.values())
    assert 0.4 * 30 * 12 < total_members < 2.0 * 30 * 12


def test_ids_are_unique_24_hex_and_users_carry_both_id_fields(tenant):
    ids = [*tenant.users, *tenant.admins, *tenant.groups, *tenant.apps, *tenant.roles, tenant.org_id]
    assert len(ids) == len(set(ids))
    assert all(HEX24.match(i) for i in ids)
    assert all(u["_id"] == u["id"] == uid for uid, u in tenant.users.items())
    assert all(a["_id"] == a["id"] == aid for aid, a in tenant.apps.items())
    assert all(g["id"] == gid and g["type"] == "user_group" for gid, g in tenant.groups.items())


def test_ids_and_created_follow_insertion_order(tenant):
    """ObjectIds start with their creation time, so natural order, `_id` order and `created` agree."""
    ids = list(tenant.users)
    assert ids == sorted(ids)
    created = [u["created"] for u in tenant.users.values()]
    assert created == sorted(created)


def test_users_are_untidy_like_real_records(tenant):
    users = list(tenant.users.values())
    states = [u.get("state", "<missing>") for u in users]
    assert {"ACTIVATED", "STAGED", "SUSPENDED", "<missing>"} <= set(states)
    assert all(u["suspended"] is True for u in users if u.get("state") == "SUSPENDED")
    assert all(u["activated"] is False for u in users if u.get("state") == "STAGED")
    assert any(u["account_locked"] is True for u in users)
    for key in ("department", "jobTitle", "employeeIdentifier", "alternateEmail", "costCenter"):
        values = [u[key] for u in users]
        assert "" in values and None in values, key
    attrs = [u["attributes"] for u in users]
    assert None in attrs and [] in attrs and any(a for a in attrs)
    managers = [u["manager"] for u in users]
    assert None in managers and "" in managers
    assert all(m in tenant.users for m in managers if m)
    assert any(m for m in managers)
    assert all(isinstance(u["mfa"]["configured"], bool) and isinstance(u["mfa"]["exclusion"], bool) for u in users)
    assert any(not u["firstname"].isascii() for u in users)
    assert len({u["email"].casefold() for u in users}) == len(users)
    assert len({u["username"].casefold() for u in users}) == len(users)


def test_admins_overlap_users_by_email_with_varied_case(tenant):
    user_emails = {u["email"].casefold(): u["email"] for u in tenant.users.values()}
    linked = [a for a in tenant.admins.values() if a["email"].casefold() in user_emails]
    assert len(linked) == round(SPEC.admins * SPEC.admin_user_overlap)
    assert any(a["email"] != user_emails[a["email"].casefold()] for a in linked)
    for admin in tenant.admins.values():
        assert admin["roleNames"] == [admin["roleName"]]
        assert tenant.roles[admin["role"]].casefold() == admin["roleName"].casefold()
        assert set(admin) >= {"_id", "email", "firstname", "lastname", "roleName", "roleNames", "role",
                              "suspended", "enableMultiFactor", "totpEnrolled", "organization", "created"}


def test_role_names_vary_the_case_of_with_across_orgs_and_custom_roles_are_used():
    spellings: set[str] = set()
    used: set[str] = set()
    for seed in range(12):
        t = generate_tenant(TenantSpec(seed=seed, users=20, admins=40, custom_roles=("Auditeur Sécurité",)))
        spellings |= {n for n in t.roles.values() if "billing" in n.casefold() and "with" in n.casefold()}
        used |= {a["roleName"] for a in t.admins.values()}
    assert "Administrator With Billing" in spellings and "Administrator with Billing" in spellings
    assert "Auditeur Sécurité" in used


def test_blank_admin_org_share():
    t = generate_tenant(TenantSpec(seed=3, users=10, admins=50, blank_admin_org_share=1.0))
    assert {a["organization"] for a in t.admins.values()} == {""}


def test_edges_point_at_existing_objects(tenant):
    for gid, ids in tenant.members.items():
        assert gid in tenant.groups and all(uid in tenant.users for uid in ids)
    for aid in tenant.apps:
        assert all(uid in tenant.users for uid in tenant.app_users[aid])
        assert all(gid in tenant.groups for gid in tenant.app_groups[aid])
    assert any(len(tenant.app_groups[aid]) for aid in tenant.apps)


def test_big_groups_hold_a_share_of_all_users():
    t = generate_tenant(TenantSpec(seed=1, users=1000, groups=5, big_groups=1, big_group_share=0.5))
    assert len(t.members[next(iter(t.groups))]) == 500


def test_apps_have_the_fields_the_spec_requires(tenant):
    for app in tenant.apps.values():
        assert {"config", "name", "ssoUrl", "displayName", "displayLabel", "sso", "organization"} <= set(app)
        assert app["sso"]["type"] == "saml"


# ---- the store -------------------------------------------------------------------------------------------


def test_ordered_id_set_keeps_order_and_slices():
    s = OrderedIdSet(["a", "b", "c"])
    assert s.add("d") and not s.add("a")
    assert s.discard("b") and not s.discard("b")
    assert s.as_list() == ["a", "c", "d"] and s.as_list()[1:3] == ["c", "d"]
    assert "c" in s and "b" not in s and len(s) == 3


def test_deleting_a_user_removes_its_edges():
    t = generate_tenant(TenantSpec(seed=5, users=50, groups=5, apps=3, avg_members_per_group=30, users_per_app=20))
    uid = next(u for u in t.users if any(u in m for m in t.members.values()))
    email = t.users[uid]["email"]
    assert t.user_by_email(email.upper()) == uid
    t.delete_user(uid)
    assert all(uid not in m for m in t.members.values())
    assert all(uid not in t.app_users[a] for a in t.apps)
    assert t.user_by_email(email) is None


def test_edge_writes_raise_conflict_and_missing():
    t = generate_tenant(TenantSpec(seed=5, users=10, groups=2, apps=1, avg_members_per_group=0))
    gid, uid = next(iter(t.groups)), next(iter(t.users))
    t.add_member(gid, uid)
    with pytest.raises(Conflict):
        t.add_member(gid, uid)
    t.remove_member(gid, uid)
    with pytest.raises(Missing):
        t.remove_member(gid, uid)
    with pytest.raises(Missing):
        t.add_member(gid, "0" * 24)


def test_caches_are_invalidated_by_writes():
    t = generate_tenant(TenantSpec(seed=5, users=10, groups=1, apps=1, avg_members_per_group=0, users_per_app=0,
                                   groups_per_app=0))
    aid, gid, uid = next(iter(t.apps)), next(iter(t.groups)), next(iter(t.users))
    assert len(t.app_user_paths(aid)) == 0
    t.bind(aid, "user_group", gid)
    t.add_member(gid, uid)
    assert [p["id"] for p in t.app_user_paths(aid)] == [uid]
    t.bind(aid, "user", uid)
    paths = t.app_user_paths(aid)[0]["paths"]
    assert sorted(len(p) for p in paths) == [1, 2]
    before = len(t.records("users"))
    t.delete_user(uid)
    assert len(t.records("users")) == before - 1 and len(t.app_user_paths(aid)) == 0


def test_lazy_records_build_only_what_is_read():
    from simulator.model import LazyRecords

    built: list[int] = []
    records = LazyRecords(list(range(1000)), lambda k: built.append(k) or {"id": k})
    assert len(records) == 1000 and built == []
    assert records[100:103] == [{"id": 100}, {"id": 101}, {"id": 102}] and built == [100, 101, 102]
    assert records[-1] == {"id": 999}
