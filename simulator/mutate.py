"""Records added or removed while a client pages through a listing: the `mutate` effect of a fault rule.

A rule such as `{"path": "^/api/systemusers$", "query": "(^|&)skip=100(&|$)", "times": 1,
"mutate": {"remove_users": 3}}` changes the org just before the matching request is served, so the pages a
client already read and the ones still to come disagree. What was added or removed is logged (GET /_sim/events,
kinds `user_added`, `user_removed`, `group_added`, `group_removed`, `member_added`, `member_removed`) so a test
can check that the next full sync missed and duplicated nothing.

Which records: removals take the first n (`remove_at: "start"`, the default: records the client may already
have paged past, shifting the later pages) or the last n (`"end"`) in the order of the listing the request
asks for, with its sort and filter, when the request is that listing (`GET /api/systemusers`,
`GET /api/v2/usergroups`, a group's `/members`); otherwise in natural order (for generated data the same as
`_id` order). Additions go at the end (`add_at: "end"`, the default: new ObjectIds sort after every other) or
at the start (`"start"`: ids older than every other, first in natural order, shifting every page).
Members: `group` names the group, else the group in the request's path (`/api/v2/usergroups/{id}/...`); a
mutation with no group to act on is logged as `mutate_skipped`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import QueryParams

from jumpcloud.ids import OBJECT_ID_PATTERN
from simulator.model import Tenant
from simulator.query import V1, V2, QueryError, parse_list_query, select
from simulator.routes_v1 import new_user_record
from simulator.state import EventLog

_GROUP_IN_PATH = re.compile(rf"^/api/v2/usergroups/({OBJECT_ID_PATTERN})(?:/|$)")


def apply(tenant: Tenant, mutate: dict[str, Any], method: str, path: str, query: str, events: EventLog,
          rule: str) -> list[dict[str, Any]]:
    """Carry out one `mutate` spec on `tenant`; returns the events logged."""
    where = {"org": tenant.org_id, "rule": rule, "request": f"{method} {path}" + (f"?{query}" if query else "")}
    change = _Change(tenant, mutate, events, where)
    change.users(method == "GET" and path == "/api/systemusers", query)
    change.groups(method == "GET" and path == "/api/v2/usergroups", query)
    if mutate.get("remove_members") or mutate.get("add_members"):
        change.members(mutate.get("group") or _group_in(path))
    return change.done


class _Change:
    """One `mutate` spec being carried out: each step changes one collection and logs what it did in `done`."""

    def __init__(self, tenant: Tenant, mutate: dict[str, Any], events: EventLog, where: dict[str, str]) -> None:
        self.tenant = tenant
        self.mutate = mutate
        self.events = events
        self.where = where
        self.remove_first = mutate.get("remove_at", "start") == "start"
        self.add_first = mutate.get("add_at", "end") == "start"
        self.done: list[dict[str, Any]] = []

    def log(self, kind: str, **fields: Any) -> None:
        self.done.append(self.events.add(kind, **fields, **self.where))

    def users(self, is_listing: bool, query: str) -> None:
        tenant = self.tenant
        if n := self.mutate.get("remove_users", 0):
            for uid in _pick(_order(tenant, "users", is_listing, query, V1), n, self.remove_first):
                tenant.delete_user(uid)
                self.log("user_removed", id=uid)
        if n := self.mutate.get("add_users", 0):
            for uid in _new_ids(tenant, tenant.users, n, self.add_first):
                record = new_user_record(uid, tenant.org_id, _seconds(uid), len(tenant.users))
                record.update(username=f"added-{uid}", email=f"added-{uid}@example.org", firstname="Added",
                              lastname=uid[-6:], state="ACTIVATED", activated=True)
                tenant.add_user(record, first=self.add_first)
                self.log("user_added", id=uid)

    def groups(self, is_listing: bool, query: str) -> None:
        tenant = self.tenant
        if n := self.mutate.get("remove_groups", 0):
            for gid in _pick(_order(tenant, "groups", is_listing, query, V2), n, self.remove_first):
                tenant.delete_group(gid)
                self.log("group_removed", id=gid)
        if n := self.mutate.get("add_groups", 0):
            for gid in _new_ids(tenant, tenant.groups, n, self.add_first):
                tenant.add_group({"attributes": None, "description": "", "email": "", "id": gid,
                                  "membershipMethod": "STATIC", "name": f"Added group {gid}", "type": "user_group"},
                                 first=self.add_first)
                self.log("group_added", id=gid)

    def members(self, group: str | None) -> None:
        tenant = self.tenant
        if group is None or group.lower() not in tenant.groups:
            self.log("mutate_skipped", reason=f"no group {group or '(none in the path)'}")
            return
        group = group.lower()
        if n := self.mutate.get("remove_members", 0):
            for uid in _pick(tenant.members[group].as_list(), n, self.remove_first):
                tenant.remove_member(group, uid)
                self.log("member_removed", group=group, id=uid)
        if n := self.mutate.get("add_members", 0):
            members = tenant.members[group]
            chosen = [uid for uid in tenant.users if uid not in members][:n]
            for uid in reversed(chosen) if self.add_first else chosen:  # the block keeps its order either way
                tenant.add_member(group, uid, first=self.add_first)
            for uid in chosen:
                self.log("member_added", group=group, id=uid)


def _order(tenant: Tenant, collection: str, is_listing: bool, query: str, dialect: str) -> list[str]:
    """Ids in the order the request's listing shows them (sort and filter), else in natural order."""
    records: Sequence[Mapping[str, Any]] = tenant.records(collection)
    if is_listing:
        try:
            records = select(records, parse_list_query(QueryParams(query), dialect))
        except QueryError:
            pass
    key = "_id" if collection == "users" else "id"
    return [r[key] for r in records]


def _pick(ids: list[str], n: int, first: bool) -> list[str]:
    return list(ids[:n]) if first else list(ids[max(0, len(ids) - n):])


def _new_ids(tenant: Tenant, table: dict[str, Any], n: int, first: bool) -> list[str]:
    """`n` ids all older (first) or newer than every id in `table`, in the order to insert them so that they
    end up ascending (inserting at the start reverses)."""
    seconds = [_seconds(i) for i in table] or [time.time()]
    when = min(seconds) - 1 if first else max(max(seconds) + 1, time.time())
    ids = sorted(tenant.new_id(max(0.0, when)) for _ in range(n))
    return ids[::-1] if first else ids


def _seconds(object_id: str) -> float:
    try:
        return float(int(object_id[:8], 16))
    except ValueError:
        return time.time()


def _group_in(path: str) -> str | None:
    match = _GROUP_IN_PATH.match(path)
    return match.group(1) if match else None


__all__ = ["apply"]
