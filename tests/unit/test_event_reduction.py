"""Reducing Directory Insights events to what the incremental refresh reads back (connector.events)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.events import event_time, reduce_events
from simulator import insights as di


def event(kind: str, **body) -> dict:
    return {"id": f"e{hash((kind, str(body))) & 0xffff:x}", "event_type": kind, "service": "directory",
            "timestamp": "2026-12-06T10:00:00.123Z", **body}


def resource(object_id: str, kind: str = "user") -> dict:
    return {"resource": {"id": object_id, "type": kind}}


def association(op: str, source: tuple[str, str], target: tuple[str, str]) -> dict:
    return {"association": di.association(op, di.side(source[0], source[1], "x"), di.side(target[0], target[1], "y"))}


def test_each_kind_of_event_names_its_read():
    touched = reduce_events([
        event("user_update", **resource("u1")),
        event("user_delete", **resource("u2")),
        event("group_create", **resource("g1", "user_group")),
        event("group_delete", **resource("g2", "user_group")),
        event("application_delete", **resource("a1", "application")),
        event("admin_update", **resource("ad1", "admin")),
        event("admin_delete", **resource("ad2", "admin")),
        event("association_change", **association("add", ("user_group", "g1"), ("user", "u3"))),
        event("association_change", **association("remove", ("application", "a2"), ("user", "u4"))),
        event("association_change", **association("add", ("application", "a2"), ("user_group", "g3"))),
    ])
    assert touched.users == {"u1"} and touched.deleted_users == {"u2"}
    assert touched.groups == {"g1"} and touched.deleted_groups == {"g2"}
    assert touched.deleted_apps == {"a1"} and touched.admins and touched.deleted_admins == {"ad2"}
    assert (touched.user_groups, touched.user_apps, touched.group_apps) == ({"u3"}, {"u4"}, {"g3"})
    assert touched.edges == {"member": {("u3", "g1")}, "user_app": {("u4", "a2")}, "group_app": {("g3", "a2")}}
    assert touched.events == 10 and touched.ignored == 0 and not touched.uninterpretable
    # u1, u2, g1, g2 read back, a1 twice (v1 and v2); u3's memberships, u4's and g3's bindings; the admins once
    assert touched.reads == 10


@pytest.mark.parametrize("orientation", ["group first", "user first"])
def test_an_association_is_read_from_either_side(orientation):
    sides = (("user_group", "g1"), ("USER", "u1"))  # the case of the type is not trusted either
    if orientation == "user first":
        sides = sides[::-1]
    assert reduce_events([event("association_change", **association("add", *sides))]).user_groups == {"u1"}


def test_events_that_change_nothing_kept_are_ignored():
    touched = reduce_events([
        event("user_login_attempt", **resource("u1")),
        event("admin_login_attempt", **resource("ad1", "admin")),
        event("group_update", **resource("sg1", "system_group")),
        event("association_change", **association("add", ("system", "s1"), ("user", "u1"))),
        event("totp_enrolled"),
    ])
    assert not touched and touched.ignored == 5 and touched.reads == 0 and not touched.uninterpretable


def test_types_the_connector_does_not_sync_are_ignored():
    events = [event("association_change", **association("add", ("application", "a1"), ("user", "u1"))),
              event("group_update", **resource("g1", "user_group"))]
    touched = reduce_events(events, resource_types=("user", "group"))
    assert touched.groups == {"g1"} and not touched.user_apps and touched.ignored == 1


@pytest.mark.parametrize("broken, why", [
    ({"id": "e1", "timestamp": "2026-12-06T10:00:00Z"}, "has no event_type"),
    (event("user_update", resource={"type": "user"}), "names no resource id"),
    (event("association_change", association={"op": "add", "connection": {"from": {"type": "user"}}}),
     "lacks the sides"),
])
def test_an_event_that_matters_but_cannot_be_read_is_reported(broken, why):
    touched = reduce_events([broken, event("user_update", **resource("u1"))])
    assert len(touched.uninterpretable) == 1 and why in touched.uninterpretable[0]
    assert touched.users == {"u1"}


def test_a_delete_event_does_not_hide_the_objects_other_changes():
    """The user may still exist (a 404 decides): its memberships are read back too."""
    touched = reduce_events([event("user_update", **resource("u1")), event("user_delete", **resource("u1")),
                             event("association_change", **association("add", ("user_group", "g"), ("user", "u1")))])
    assert touched.deleted_users == {"u1"} and touched.user_groups == {"u1"}
    assert touched.reads == 2  # the user once, its memberships once


@pytest.mark.parametrize("text, expected", [
    ("2026-12-06T10:00:00.123Z", datetime(2026, 12, 6, 10, 0, 0, 123000, tzinfo=UTC)),
    ("2026-12-06T10:00:00.123456789Z", datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)),  # SSO: ns
    ("2026-12-06T10:00:00Z", datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)),  # RADIUS: whole seconds
    ("yesterday", None), (None, None),
])
def test_event_times_in_every_precision(text, expected):
    assert event_time({"timestamp": text}) == expected


def test_the_simulators_events_reduce_to_their_writes():
    """The shapes the simulator records (simulator.insights) are the shapes the reducer reads."""
    log = di.InsightsLog("o" * 24)
    user = {"_id": "u1", "username": "ann"}
    log.record("user_update", resource=di.user_resource(user), changes=[])
    log.record("group_delete", resource=di.group_resource({"id": "g1", "name": "Ops"}))
    log.record("association_change", association=di.association(
        "add", di.side("application", "a1", "Slack"), di.side("user_group", "g2", "Sales")))
    events, _ = log.query(datetime(2000, 1, 1, tzinfo=UTC), None, 100, False, None)
    touched = reduce_events(events)
    assert touched.users == {"u1"} and touched.deleted_groups == {"g1"} and touched.group_apps == {"g2"}


def test_identity_management_turned_on_or_off_reads_the_app():
    """``integration_activate`` / ``integration_deactivate`` name the app in ``application``, not ``resource``."""
    touched = reduce_events([event("integration_activate", application={"id": "a1", "name": "Slack"}),
                             event("integration_deactivate", application={"id": "a2", "name": "Zoom"})])
    assert touched.apps == {"a1", "a2"} and touched.reads == 4  # each app's v1 and v2 record
