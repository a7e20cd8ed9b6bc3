"""Mapping of untidy JumpCloud records, role-name matching and admin-to-user linking."""

import pytest

from connector.admins import admin_role_names, link_admins, map_admin
from connector.apps import binding_grants, map_app
from connector.groups import map_group, member_grants
from connector.roles import BUILTIN_ROLES, derive_roles, role_id
from connector.users import map_user, user_status


@pytest.mark.parametrize("record, status", [
    ({"state": "ACTIVATED"}, "active"),
    ({"state": "STAGED", "activated": False}, "staged"),
    ({"state": "SUSPENDED", "suspended": True}, "suspended"),
    ({"state": "ACTIVATED", "suspended": True}, "suspended"),
    ({"state": "ACTIVATED", "account_locked": True}, "locked"),
    ({"state": "SUSPENDED", "account_locked": True}, "suspended"),
    ({}, "active"),                                   # older records lack state entirely
    ({"activated": False}, "staged"),
    ({"suspended": True}, "suspended"),
    ({"state": None, "activated": True, "account_locked": None}, "active"),
    ({"state": "", "activated": False}, "staged"),
    ({"state": "PENDING_REVIEW"}, "pending_review"),  # unknown states are kept, not guessed
])
def test_user_status(record, status):
    assert user_status(record) == status


def test_map_user_tolerates_nulls_and_empty_strings():
    record = {"_id": "u1", "id": "u1", "username": "alice", "email": "Alice@Example.com", "firstname": "",
              "lastname": None, "displayname": None, "department": "", "jobTitle": None, "manager": "",
              "employeeIdentifier": None, "attributes": None, "mfa": None, "alternateEmail": None}
    user = map_user(record)
    assert user.id == "u1" and user.name == "alice" and user.email == "Alice@Example.com"
    assert user.status == "active"
    assert user.profile == {"username": "alice"}  # nothing unset is stored


def test_map_user_full_profile():
    record = {"_id": "u2", "username": "bob", "email": "bob@x.io", "firstname": "Bob", "lastname": "Ng",
              "department": "Eng", "jobTitle": "SRE", "employeeType": "FTE", "employeeIdentifier": "E7",
              "manager": "u1", "mfa": {"configured": True, "exclusion": False}, "state": "STAGED",
              "created": "2024-01-01T00:00:00Z", "attributes": [{"name": "cc", "value": "1"}]}
    user = map_user(record)
    assert user.name == "Bob Ng" and user.status == "staged"
    assert user.profile["manager_id"] == "u1" and user.profile["mfa_configured"] is True
    assert user.profile["mfa_exclusion"] is False and user.profile["employee_id"] == "E7"
    assert user.profile["attributes"] == [{"name": "cc", "value": "1"}]


def test_record_without_id_is_an_error():
    with pytest.raises(ValueError, match="without an id"):
        map_user({"username": "x"})


def test_map_admin_group_app():
    admin = map_admin({"_id": "a1", "email": "root@x.io", "firstname": None, "lastname": "",
                       "roleName": "Administrator with Billing", "suspended": False, "enableMultiFactor": True})
    assert (admin.type, admin.name, admin.status) == ("admin", "root@x.io", "active")
    assert admin.profile["role_names"] == ["Administrator with Billing"]
    assert map_admin({"_id": "a2", "suspended": True}).status == "suspended"
    group = map_group({"id": "g1", "name": "Eng", "description": "", "membershipMethod": "STATIC"})
    assert group.name == "Eng" and group.profile == {"membership_method": "STATIC"}
    app = map_app({"_id": "p1", "name": "slack", "displayLabel": "Slack Prod", "active": False, "sso": None})
    assert app.name == "Slack Prod" and app.status == "inactive" and app.profile["template"] == "slack"


def test_admin_role_names_fall_back_to_list():
    assert admin_role_names({"roleName": "", "roleNames": ["Help Desk", "", None]}) == ["Help Desk"]
    assert admin_role_names({"roleName": None, "roleNames": None}) == []


@pytest.mark.parametrize("a, b", [
    ("Administrator With Billing", "administrator with billing"),
    ("Administrator with Billing", "ADMINISTRATOR  WITH BILLING"),
    ("Read Only", " read only "),
])
def test_role_names_match_case_insensitively(a, b):
    assert role_id(a) == role_id(b)


def test_derive_roles_builtins_customs_and_assignments():
    roles, grants = derive_roles([("a1", ["Administrator with Billing"]), ("a2", ["Auditors"]),
                                  ("a3", ["auditors"]), ("a4", [])])
    names = {r.id: r.name for r in roles}
    assert len(roles) == len(BUILTIN_ROLES) + 1
    assert names["administrator-with-billing"] == "Administrator With Billing"  # the built-in spelling
    assert names["auditors"] == "Auditors"  # first spelling in sorted order, stable between syncs
    assert {(g.resource_id, g.principal_id) for g in grants} == {
        ("administrator-with-billing", "a1"), ("auditors", "a2"), ("auditors", "a3")}
    assert all(g.entitlement == "assigned" and g.principal_type == "admin" for g in grants)


def test_link_admins_by_email_case_insensitive():
    links = link_admins(
        [("a1", "Alice@Example.com"), ("a2", "nobody@example.com"), ("a3", None), ("a4", "dup@x.io")],
        [("u1", "alice@example.COM"), ("u2", "bob@example.com"), ("u3", "dup@x.io"), ("u4", "DUP@x.io"),
         ("u5", None)])
    assert links == {"a1": "u1", "a2": None, "a3": None, "a4": None}


def test_grants_from_connections():
    conns = [{"to": {"id": "u1", "type": "user"}}, {"to": {"id": "u1", "type": "user"}},
             {"to": {"id": "g9", "type": "user_group"}}, {"to": None}, {}]
    assert [g.principal_id for g in member_grants("g1", conns)] == ["u1"]
    grants = binding_grants("p1", conns, conns)
    assert {(g.principal_type, g.principal_id) for g in grants} == {("user", "u1"), ("group", "g9")}


def test_nul_and_structures_in_text_fields():
    admin = map_admin({"_id": "a9", "lastname": [], "roleNames": ["\x00", " Help\x00 Desk "]})
    assert admin.name == "a9" and admin.profile["role_names"] == ["Help Desk"]
    user = map_user({"_id": "u9", "username": {"x": 1}, "email": "a\x00@b.c", "attributes": [{"n": "v\x00"}]})
    assert user.email == "a@b.c" and "username" not in user.profile and user.profile["attributes"] == [{"n": "v"}]
