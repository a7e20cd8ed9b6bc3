"""In-memory data of one JumpCloud organisation, and the writes the API can make to it.

Why a hand-rolled store rather than SQLite: the simulator has to answer paged listings of 100k users in well
under a millisecond of server time each, with stable order while nothing changes, and the shapes it returns are
raw JumpCloud JSON anyway. Records are kept as the dicts the API would return; everything derived from them
(sorted orders, filtered listings, graph traversals) is computed lazily and cached until the next write.

Order: "natural order" is insertion order (what MongoDB, behind JumpCloud, returns when no sort is given).
Membership and binding sets keep insertion order too, so `skip`/`limit` paging is stable between writes.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from simulator import insights as di

USER = "user"
USER_GROUP = "user_group"

def object_id(rng: random.Random, when: float) -> str:
    """A MongoDB-style ObjectId (``jumpcloud.ids``): 4 bytes of creation seconds, then 64 bits from `rng`
    (deterministic per seed)."""
    return f"{int(when) & 0xFFFFFFFF:08x}{rng.getrandbits(64):016x}"


def iso_time(when: float) -> str:
    """JumpCloud's timestamp format: ISO 8601, UTC, milliseconds, `Z`."""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class OrderedIdSet:
    """An insertion-ordered set of ids with O(1) add/remove/contains and cheap slicing.

    Pages are slices of a list that is rebuilt only after a change, so paging through a group of 100k
    members costs one list build, not one per page.
    """

    __slots__ = ("_items", "_list")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._items: dict[str, None] = dict.fromkeys(ids)
        self._list: list[str] | None = None

    def add(self, item: str, first: bool = False) -> bool:
        if item in self._items:
            return False
        if first:
            self._items = {item: None, **self._items}
        else:
            self._items[item] = None
        self._list = None
        return True

    def discard(self, item: str) -> bool:
        if item not in self._items:
            return False
        del self._items[item]
        self._list = None
        return True

    def as_list(self) -> list[str]:
        if self._list is None:
            self._list = list(self._items)
        return self._list

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_list())


class Conflict(Exception):
    """A write that would break a uniqueness rule or re-add an existing edge (HTTP 409)."""


class Missing(Exception):
    """A write naming an id that does not exist, or removing an edge that is absent (HTTP 404)."""


def connection(kind: str, obj_id: str) -> dict[str, Any]:
    """One graph edge as JumpCloud returns it: `from` omitted (clear from context), attributes null."""
    return {"attributes": None, "to": {"attributes": None, "id": obj_id, "type": kind}}


def with_paths(kind: str, obj_id: str, paths: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """A GraphObjectWithPaths record."""
    return {"compiledAttributes": None, "id": obj_id, "paths": paths, "type": kind}


class LazyRecords(Sequence[dict[str, Any]]):
    """A read-only list whose records are built when read. Paging through the 50,000 users of an app bound to a
    big group then builds 100 GraphObjectWithPaths per page instead of holding 50,000 of them in memory."""

    __slots__ = ("_keys", "_build")

    def __init__(self, keys: list[Any], build: Callable[[Any], dict[str, Any]]) -> None:
        self._keys = keys
        self._build = build

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._build(k) for k in self._keys[index]]
        return self._build(self._keys[index])


def _one_edge_user(uid: str) -> dict[str, Any]:
    return with_paths(USER, uid, [[connection(USER, uid)]])


def _one_edge_group(gid: str) -> dict[str, Any]:
    return with_paths(USER_GROUP, gid, [[connection(USER_GROUP, gid)]])


def _user_access(item: tuple[str, list[str | None]]) -> dict[str, Any]:
    uid, via = item
    user = connection(USER, uid)
    return with_paths(USER, uid, [[user] if gid is None else [connection(USER_GROUP, gid), user] for gid in via])


@dataclass(eq=False)
class Tenant:
    """One organisation: users, admins, groups, applications, and the edges between them.

    `members[group_id]` holds user ids; `app_users` / `app_groups` hold the direct bindings of an application.
    Reverse indexes (a user's groups, a group's apps...) are kept in step so deletes and `memberof` are cheap.
    """

    org_id: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    admins: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, OrderedIdSet] = field(default_factory=dict)
    app_users: dict[str, OrderedIdSet] = field(default_factory=dict)
    app_groups: dict[str, OrderedIdSet] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # role id -> role name, as this org spells it
    #: app id -> the `provision` object of its v2 record (None: `"provision": null`; no key: no such field).
    app_provisioning: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    default_user_state: str = "STAGED"
    seed: int = 0
    #: The organisation's name as `GET /api/organizations` shows it (`displayName`).
    display_name: str = ""

    def __post_init__(self) -> None:
        self.version = 0
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self._rng = random.Random(f"{self.seed}:runtime:{self.org_id}")
        self._user_groups: dict[str, OrderedIdSet] = {uid: OrderedIdSet() for uid in self.users}
        self._user_apps: dict[str, OrderedIdSet] = {uid: OrderedIdSet() for uid in self.users}
        self._group_apps: dict[str, OrderedIdSet] = {gid: OrderedIdSet() for gid in self.groups}
        for gid in self.groups:
            self.members.setdefault(gid, OrderedIdSet())
        for aid in self.apps:
            self.app_users.setdefault(aid, OrderedIdSet())
            self.app_groups.setdefault(aid, OrderedIdSet())
        for gid, ids in self.members.items():
            for uid in ids:
                self._user_groups[uid].add(gid)
        for aid in self.apps:
            for uid in self.app_users[aid]:
                self._user_apps[uid].add(aid)
            for gid in self.app_groups[aid]:
                self._group_apps[gid].add(aid)
        self._emails = {_fold(u.get("email")): uid for uid, u in self.users.items() if u.get("email")}
        self._usernames = {_fold(u.get("username")): uid for uid, u in self.users.items() if u.get("username")}
        #: The Directory Insights events of the writes since the org was built (its generated data predates them).
        self.insights = di.InsightsLog(self.org_id)

    # ---- caching -------------------------------------------------------------------------------------

    def cached(self, key: Any, compute: Callable[[], Any], max_entries: int = 256) -> Any:
        """Memoise a derived value until the next write (any write clears everything: simple and safe)."""
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        value = compute()
        self._cache[key] = value
        if len(self._cache) > max_entries:
            self._cache.popitem(last=False)
        return value

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()

    def new_id(self, when: float | None = None) -> str:
        """A fresh ObjectId created now (or at `when`), unused by any record of this org."""
        while True:
            oid = object_id(self._rng, time.time() if when is None else when)
            if oid not in self.users and oid not in self.groups and oid not in self.apps and oid not in self.admins:
                return oid

    # ---- natural-order listings ----------------------------------------------------------------------

    def records(self, collection: str) -> list[dict[str, Any]]:
        """All records of `users`, `admins`, `groups` or `apps`, in insertion order (cached)."""
        return self.cached(("records", collection), lambda: list(getattr(self, collection).values()))

    # ---- graph traversals (GraphObjectWithPaths) -----------------------------------------------------

    def app_user_paths(self, app_id: str) -> LazyRecords:
        """Users with access to an app: a 1-edge path per direct binding, a 2-edge path per bound group."""

        def compute() -> LazyRecords:
            via: dict[str, list[str | None]] = {}  # user id -> None (direct) or the group it comes through
            for uid in self.app_users[app_id]:
                via.setdefault(uid, []).append(None)
            for gid in self.app_groups[app_id]:
                for uid in self.members[gid]:
                    via.setdefault(uid, []).append(gid)
            return LazyRecords(list(via.items()), _user_access)

        return self.cached(("app_users", app_id), compute)

    def app_group_paths(self, app_id: str) -> LazyRecords:
        """User groups bound to an app (user groups do not nest, so every path is one edge)."""
        return LazyRecords(self.app_groups[app_id].as_list(), _one_edge_group)

    def group_membership(self, group_id: str) -> LazyRecords:
        """Effective members of a group; without nesting these are the direct members, one edge each."""
        return LazyRecords(self.members[group_id].as_list(), _one_edge_user)

    def user_memberof(self, user_id: str) -> LazyRecords:
        """Groups a user belongs to, one edge each."""
        return LazyRecords(self._user_groups[user_id].as_list(), _one_edge_group)

    def user_apps(self, user_id: str) -> list[str]:
        """The apps bound directly to a user."""
        return self._user_apps[user_id].as_list()

    def group_apps(self, group_id: str) -> list[str]:
        """The apps bound to a user group."""
        return self._group_apps[group_id].as_list()

    # ---- users ---------------------------------------------------------------------------------------

    def user_by_email(self, email: str) -> str | None:
        return self._emails.get(_fold(email))

    def user_by_username(self, username: str) -> str | None:
        return self._usernames.get(_fold(username))

    def add_user(self, record: dict[str, Any], first: bool = False) -> dict[str, Any]:
        """Insert a complete record (ids included). Email and username are unique, case-insensitively.
        `first` puts it at the start of the natural order (fault injection: a record appearing before pages
        a client already read)."""
        self._check_unique(record, None)
        uid = record["_id"]
        if first:
            self.users = {uid: record, **self.users}
        else:
            self.users[uid] = record
        self._user_groups[uid] = OrderedIdSet()
        self._user_apps[uid] = OrderedIdSet()
        self._index_user(record, uid)
        self._changed()
        self.insights.record("user_create", resource=di.user_resource(record))
        return record

    def update_user(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        record = self._get(self.users, user_id, "user")
        self._check_unique(changes, user_id)
        changed = di.field_changes(record, changes)
        self._unindex_user(record)
        record.update(changes)
        self._index_user(record, user_id)
        self._changed()
        self.insights.record("user_update", resource=di.user_resource(record), changes=changed)
        return record

    def delete_user(self, user_id: str) -> dict[str, Any]:
        """Remove a user and every edge that points at it (group memberships, app bindings)."""
        record = self._get(self.users, user_id, "user")
        for gid in self._user_groups.pop(user_id).as_list():
            self.members[gid].discard(user_id)
        for aid in self._user_apps.pop(user_id).as_list():
            self.app_users[aid].discard(user_id)
        self._unindex_user(record)
        del self.users[user_id]
        self._changed()
        self.insights.record("user_delete", resource=di.user_resource(record))
        return record

    def _check_unique(self, record: dict[str, Any], self_id: str | None) -> None:
        for key, index in (("email", self._emails), ("username", self._usernames)):
            value = record.get(key)
            if value:
                owner = index.get(_fold(value))
                if owner is not None and owner != self_id:
                    raise Conflict(f"Already Exists: {key} must be unique")

    def _index_user(self, record: dict[str, Any], uid: str) -> None:
        if record.get("email"):
            self._emails[_fold(record["email"])] = uid
        if record.get("username"):
            self._usernames[_fold(record["username"])] = uid

    def _unindex_user(self, record: dict[str, Any]) -> None:
        if record.get("email"):
            self._emails.pop(_fold(record["email"]), None)
        if record.get("username"):
            self._usernames.pop(_fold(record["username"]), None)

    # ---- admins --------------------------------------------------------------------------------------

    def role_named(self, name: str) -> tuple[str, str] | None:
        """(role id, this org's spelling) for a role name matched case-insensitively."""
        folded = _fold(name)
        for rid, rname in self.roles.items():
            if _fold(rname) == folded:
                return rid, rname
        return None

    def add_admin(self, record: dict[str, Any]) -> dict[str, Any]:
        email = _fold(record.get("email"))
        if any(_fold(a.get("email")) == email for a in self.admins.values()):
            raise Conflict("Already Exists: an administrator with this email exists")
        self.admins[record["_id"]] = record
        self._changed()
        self.insights.record("admin_create", resource=di.admin_resource(record))
        return record

    def update_admin(self, admin_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        record = self._get(self.admins, admin_id, "administrator")
        if "email" in changes:
            email = _fold(changes["email"])
            if any(_fold(a.get("email")) == email and aid != admin_id for aid, a in self.admins.items()):
                raise Conflict("Already Exists: an administrator with this email exists")
        changed = di.field_changes(record, changes)
        record.update(changes)
        self._changed()
        self.insights.record("admin_update", resource=di.admin_resource(record), changes=changed)
        return record

    def delete_admin(self, admin_id: str) -> dict[str, Any]:
        record = self._get(self.admins, admin_id, "administrator")
        del self.admins[admin_id]
        self._changed()
        self.insights.record("admin_delete", resource=di.admin_resource(record))
        return record

    # ---- groups --------------------------------------------------------------------------------------

    def add_group(self, record: dict[str, Any], first: bool = False) -> dict[str, Any]:
        self._check_group_name(record.get("name"), None)
        gid = record["id"]
        if first:
            self.groups = {gid: record, **self.groups}
        else:
            self.groups[gid] = record
        self.members[gid] = OrderedIdSet()
        self._group_apps[gid] = OrderedIdSet()
        self._changed()
        self.insights.record("group_create", resource=di.group_resource(record))
        return record

    def update_group(self, group_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        record = self._get(self.groups, group_id, "user group")
        if "name" in changes:
            self._check_group_name(changes["name"], group_id)
        changed = di.field_changes(record, changes)
        record.update(changes)
        self._changed()
        self.insights.record("group_update", resource=di.group_resource(record), changes=changed)
        return record

    def delete_group(self, group_id: str) -> dict[str, Any]:
        record = self._get(self.groups, group_id, "user group")
        for uid in self.members.pop(group_id).as_list():
            self._user_groups[uid].discard(group_id)
        for aid in self._group_apps.pop(group_id).as_list():
            self.app_groups[aid].discard(group_id)
        del self.groups[group_id]
        self._changed()
        self.insights.record("group_delete", resource=di.group_resource(record))
        return record

    def _check_group_name(self, name: Any, self_id: str | None) -> None:
        folded = _fold(name)
        for gid, group in self.groups.items():
            if gid != self_id and _fold(group.get("name")) == folded:
                raise Conflict("Already Exists: a user group with this name exists")

    def add_member(self, group_id: str, user_id: str, first: bool = False) -> None:
        self._get(self.groups, group_id, "user group")
        self._get(self.users, user_id, "user")
        if not self.members[group_id].add(user_id, first):
            raise Conflict("Already Exists: the user is already a member of the group")
        self._user_groups[user_id].add(group_id)
        self._changed()
        self._membership_event("add", group_id, user_id)

    def remove_member(self, group_id: str, user_id: str) -> None:
        self._get(self.groups, group_id, "user group")
        self._get(self.users, user_id, "user")
        if not self.members[group_id].discard(user_id):
            raise Missing("Not Found: the user is not a member of the group")
        self._user_groups[user_id].discard(group_id)
        self._changed()
        self._membership_event("remove", group_id, user_id)

    def _membership_event(self, op: str, group_id: str, user_id: str) -> None:
        group = di.side("user_group", group_id, self.groups[group_id].get("name"))
        user = di.side("user", user_id, self.users[user_id].get("username"))
        self.insights.record("association_change", association=di.association(op, group, user))

    # ---- applications --------------------------------------------------------------------------------

    def add_app(self, record: dict[str, Any]) -> dict[str, Any]:
        aid = record["_id"]
        self.apps[aid] = record
        self.app_users[aid] = OrderedIdSet()
        self.app_groups[aid] = OrderedIdSet()
        self._changed()
        self.insights.record("application_create", resource=di.app_resource(record))
        return record

    def set_provisioning(self, app_id: str, provision: dict[str, Any] | None) -> None:
        """Turn an app's Identity Management on (a `provision` object) or off (None), as an administrator does in
        the console; Directory Insights logs `integration_activate` / `integration_deactivate`."""
        record = self._get(self.apps, app_id, "application")
        self.app_provisioning[app_id] = provision
        self._changed()
        self.insights.record("integration_activate" if provision else "integration_deactivate",
                             application={"id": app_id, "name": record.get("displayLabel") or record.get("name")})

    def delete_app(self, app_id: str) -> dict[str, Any]:
        record = self._get(self.apps, app_id, "application")
        for uid in self.app_users.pop(app_id).as_list():
            self._user_apps[uid].discard(app_id)
        for gid in self.app_groups.pop(app_id).as_list():
            self._group_apps[gid].discard(app_id)
        del self.apps[app_id]
        self.app_provisioning.pop(app_id, None)
        self._changed()
        self.insights.record("application_delete", resource=di.app_resource(record))
        return record

    def bind(self, app_id: str, kind: str, target_id: str) -> None:
        """Add a direct association app -> user or app -> user_group."""
        self._get(self.apps, app_id, "application")
        edges, reverse = self._binding_sets(app_id, kind, target_id)
        if not edges.add(target_id):
            raise Conflict(f"Already Exists: the {kind} is already associated with the application")
        reverse.add(app_id)
        self._changed()
        self._binding_event("add", app_id, kind, target_id)

    def unbind(self, app_id: str, kind: str, target_id: str) -> None:
        self._get(self.apps, app_id, "application")
        edges, reverse = self._binding_sets(app_id, kind, target_id)
        if not edges.discard(target_id):
            raise Missing(f"Not Found: the {kind} is not associated with the application")
        reverse.discard(app_id)
        self._changed()
        self._binding_event("remove", app_id, kind, target_id)

    def _binding_event(self, op: str, app_id: str, kind: str, target_id: str) -> None:
        app = self.apps[app_id]
        target = self.users[target_id] if kind == USER else self.groups[target_id]
        name = target.get("username") if kind == USER else target.get("name")
        source = di.side("application", app_id, app.get("displayLabel") or app.get("name"))
        self.insights.record("association_change", association=di.association(op, source, di.side(kind, target_id, name)))

    def _binding_sets(self, app_id: str, kind: str, target_id: str) -> tuple[OrderedIdSet, OrderedIdSet]:
        if kind == USER:
            self._get(self.users, target_id, "user")
            return self.app_users[app_id], self._user_apps[target_id]
        self._get(self.groups, target_id, "user group")
        return self.app_groups[app_id], self._group_apps[target_id]

    # ---- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _get(table: dict[str, dict[str, Any]], obj_id: str, what: str) -> dict[str, Any]:
        record = table.get(obj_id)
        if record is None:
            raise Missing(f"Not Found: no {what} with id {obj_id}")
        return record

    def dump(self) -> dict[str, Any]:
        """The whole tenant as JSON-ready data, for tests that compare a database with the source."""
        return {
            "org_id": self.org_id,
            "roles": [{"id": rid, "name": name} for rid, name in self.roles.items()],
            "users": list(self.users.values()),
            "admins": list(self.admins.values()),
            "groups": [{**g, "members": self.members[gid].as_list()} for gid, g in self.groups.items()],
            "apps": [
                {**a, "users": self.app_users[aid].as_list(), "groups": self.app_groups[aid].as_list(),
                 **({"provision": self.app_provisioning[aid]} if aid in self.app_provisioning else {})}
                for aid, a in self.apps.items()
            ],
        }


def _fold(value: Any) -> str:
    return value.casefold() if isinstance(value, str) else ""
