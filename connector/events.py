"""Directory Insights events reduced to what an incremental refresh must read back from the API.

An event says that something changed, not what it is now: the refresh reads the current state of every object
an event names (``Touched``) and writes it through the same store as a full sync. So order, duplicates and
events of changes already undone do no harm; a missing event is a change the refresh does not see (the full
sync repairs it).

Which event types matter, and how their bodies look, is in docs/directory-insights.md (documented vs inferred).
Types outside ``USER_EVENTS`` … ``ASSOCIATION_EVENT`` (logins, password and TOTP events, systems, SSO…) are
ignored: none of them changes a resource or grant jumpsync keeps. An event of a type that matters whose body
lacks what it needs (an id, the sides of an association) cannot be interpreted, and the refresh asks for a full
sync instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: A system user's record changed (``user_status`` reads the state, suspension and lockout).
USER_EVENTS = frozenset({"user_create", "user_update", "user_delete", "user_activated", "user_suspended",
                         "user_unsuspended", "user_password_set", "user_lockout", "user_unlocked"})
ADMIN_EVENTS = frozenset({"admin_create", "admin_update", "admin_delete", "admin_suspended", "admin_unsuspend"})
GROUP_EVENTS = frozenset({"group_create", "group_update", "group_delete"})
#: An app changed, or its Identity Management (SCIM) was turned on or off (``application.id`` names it).
APP_EVENTS = frozenset({"application_create", "application_update", "application_delete", "integration_activate",
                        "integration_deactivate"})
ASSOCIATION_EVENT = "association_change"
DELETE_EVENTS = frozenset({"user_delete", "admin_delete", "group_delete", "application_delete"})

#: ``resource.type`` of a group event that is not a user group (system groups share the event names).
_OTHER_GROUP_TYPES = frozenset({"system_group"})


@dataclass
class Touched:
    """What a batch of events asks the refresh to read back. Each set is one kind of read; ``reads`` counts them.

    ``deleted_*`` are the objects a delete event names: they are marked deleted only if reading them back
    answers 404 (an object that is still there, or back, is written as it is)."""

    users: set[str] = field(default_factory=set)
    user_groups: set[str] = field(default_factory=set)   # users whose group memberships to read
    user_apps: set[str] = field(default_factory=set)     # users whose direct app bindings to read
    groups: set[str] = field(default_factory=set)
    group_apps: set[str] = field(default_factory=set)    # groups whose app bindings to read
    apps: set[str] = field(default_factory=set)
    admins: bool = False                                 # the admins are listed again (no GET by id)
    deleted_users: set[str] = field(default_factory=set)
    deleted_groups: set[str] = field(default_factory=set)
    deleted_apps: set[str] = field(default_factory=set)
    deleted_admins: set[str] = field(default_factory=set)
    #: The edges association events name, (holder id, resource id) per kind: ``member`` (user, group),
    #: ``user_app`` (user, app), ``group_app`` (group, app). Reading a holder back may remove only these.
    edges: dict[str, set[tuple[str, str]]] = field(
        default_factory=lambda: {"member": set(), "user_app": set(), "group_app": set()})
    #: Why an event could not be interpreted (the refresh then asks for a full sync).
    uninterpretable: list[str] = field(default_factory=list)
    events: int = 0          # events that touched something
    ignored: int = 0         # events of types that change nothing jumpsync keeps
    #: The timestamps of the events that touched something (what the event lag is measured from).
    times: list[datetime] = field(default_factory=list)

    @property
    def reads(self) -> int:
        """How many requests the reads will take, unless a listing has more than 100 rows: one per object, two per
        app (its v1 record and its v2 provisioning)."""
        return (len(self.users | self.deleted_users) + len(self.user_groups) + len(self.user_apps)
                + len(self.groups | self.deleted_groups) + len(self.group_apps)
                + 2 * len(self.apps | self.deleted_apps) + int(self.admins))

    def __bool__(self) -> bool:
        return self.reads > 0


def event_time(event: dict[str, Any]) -> datetime | None:
    """An event's ``timestamp`` (RFC 3339, ms or ns), or None when it has none that parses."""
    value = event.get("timestamp")
    if not isinstance(value, str):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # nanoseconds (SSO events) are more than fromisoformat takes: keep microseconds
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits):]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _resource_id(event: dict[str, Any]) -> str | None:
    """The id of the object an event is about: ``resource.id``, or ``application.id`` (integration events)."""
    for key in ("resource", "application"):
        holder = event.get(key)
        value = holder.get("id") if isinstance(holder, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def _side(association: dict[str, Any], end: str) -> tuple[str, str] | None:
    """(type, object id) of one end of an association, the type lower-cased."""
    connection = association.get("connection")
    side = connection.get(end) if isinstance(connection, dict) else None
    if not isinstance(side, dict):
        return None
    kind, object_id = side.get("type"), side.get("object_id") or side.get("id")
    if not isinstance(kind, str) or not isinstance(object_id, str) or not object_id:
        return None
    return kind.lower(), object_id


def reduce_events(events: list[dict[str, Any]], resource_types: tuple[str, ...] = ("user", "admin", "group", "app",
                                                                                      "role")) -> Touched:
    """What ``events`` ask to read back, for a connector that syncs ``resource_types``."""
    touched = Touched()
    types = set(resource_types)
    for event in events:
        outcome = _reduce_one(event, types, touched)
        if outcome is True:
            touched.events += 1
            moment = event_time(event)
            if moment is not None:
                touched.times.append(moment)
        elif outcome is False:
            touched.ignored += 1
        else:
            touched.uninterpretable.append(outcome)
    return touched


def _reduce_one(event: dict[str, Any], types: set[str], touched: Touched) -> bool | str:
    """Add what one event asks for: True if it touched something, False if it changes nothing jumpsync keeps, or
    why it cannot be interpreted."""
    kind = event.get("event_type")
    if not isinstance(kind, str):
        return f"event {event.get('id')!r} has no event_type"
    if kind in USER_EVENTS or kind in GROUP_EVENTS or kind in APP_EVENTS or kind in ADMIN_EVENTS:
        return _reduce_resource_event(event, kind, types, touched)
    if kind == ASSOCIATION_EVENT:
        return _reduce_association(event, types, touched)
    return False


def _resource_type_of(kind: str) -> str:
    """The resource type a user, group, app or admin event concerns."""
    if kind in USER_EVENTS:
        return "user"
    if kind in GROUP_EVENTS:
        return "group"
    return "app" if kind in APP_EVENTS else "admin"


def _reduce_resource_event(event: dict[str, Any], kind: str, types: set[str], touched: Touched) -> bool | str:
    """A user, group, app or admin created, changed or deleted: that record to read back (or to delete)."""
    if kind in GROUP_EVENTS:
        resource = event.get("resource")
        if isinstance(resource, dict) and resource.get("type") in _OTHER_GROUP_TYPES:
            return False
    wanted = _resource_type_of(kind)
    if wanted not in types:
        return False
    object_id = _resource_id(event)
    if object_id is None:
        return f"{kind} event {event.get('id')!r} names no resource id"
    deleted = kind in DELETE_EVENTS
    if wanted == "admin":
        touched.admins = True
        if deleted:
            touched.deleted_admins.add(object_id)
        return True
    target, gone = {"user": (touched.users, touched.deleted_users),
                    "group": (touched.groups, touched.deleted_groups),
                    "app": (touched.apps, touched.deleted_apps)}[wanted]
    (gone if deleted else target).add(object_id)
    return True


#: The associations jumpsync keeps, by the pair of types at their ends: (edge kind, holder type, resource type,
#: the resource type a connector must sync for it). Systems, system groups, directories, RADIUS…: not kept.
_KEPT_ASSOCIATIONS: dict[frozenset[str], tuple[str, str, str, str]] = {
    frozenset({"user_group", "user"}): ("member", "user", "user_group", "group"),
    frozenset({"application", "user"}): ("user_app", "user", "application", "app"),
    frozenset({"application", "user_group"}): ("group_app", "user_group", "application", "app"),
}


def _reduce_association(event: dict[str, Any], types: set[str], touched: Touched) -> bool | str:
    """An association added or removed: the holder whose edges to read back, and the edge itself."""
    association = event.get("association")
    ends = (_side(association, "from"), _side(association, "to")) if isinstance(association, dict) else (None, None)
    if ends[0] is None or ends[1] is None:
        return f"association_change event {event.get('id')!r} lacks the sides of the association"
    by_type = {ends[0][0]: ends[0][1], ends[1][0]: ends[1][1]}
    kept = _KEPT_ASSOCIATIONS.get(frozenset(by_type))
    if kept is None:
        return False
    kind, holder, resource, wanted = kept
    if wanted not in types:
        return False
    holders = {"member": touched.user_groups, "user_app": touched.user_apps, "group_app": touched.group_apps}[kind]
    holders.add(by_type[holder])
    touched.edges[kind].add((by_type[holder], by_type[resource]))
    return True
