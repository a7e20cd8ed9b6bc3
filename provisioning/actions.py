"""What each action does to JumpCloud, made idempotent, then mirrored into the database.

Each action is safe to run again after a crash at any point: graph changes treat 409 on add and 404 on remove
as "already so" (after checking the target still exists); state changes read the user first and skip what
already holds; a create whose user already exists resolves to that user when email and username match.

An ambiguous write is recorded for what it was: when the client sent a write again because the first send's
answer was lost (``JumpCloudError.after_lost_answer``), an "already so" (409, 404, "only a STAGED user can be
activated" with the user now active) is this request's own change, confirmed on retry: ``changed: true,
confirmed_on_retry: true``, not ``changed: false``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import BadRequestError, ConflictError, NotFoundError
from provisioning.params import (
    AppAccessParams,
    GroupMemberParams,
    InvalidRequest,
    RoleParams,
    UserCreateParams,
    UserRefParams,
)
from provisioning.resolve import Resolver
from provisioning.writethrough import WriteThrough


@dataclass
class ActionContext:
    client: JumpCloudClient | None  # None in dry-run mode: nothing is sent to JumpCloud
    resolve: Resolver
    write: WriteThrough

    @property
    def dry_run(self) -> bool:
        return self.client is None

    @property
    def api(self) -> JumpCloudClient:
        """The client, for an action past its dry-run check."""
        if self.client is None:
            raise RuntimeError("a dry run sends nothing to JumpCloud")
        return self.client


@dataclass(frozen=True)
class Outcome:
    changed: bool
    result: dict[str, Any] = field(default_factory=dict)
    #: The change was made by a send whose answer was lost, and found made when the client sent it again.
    confirmed_on_retry: bool = False

    def as_result(self, dry_run: bool) -> dict[str, Any]:
        if dry_run:
            return {**self.result, "dry_run": True}
        confirmed = {"confirmed_on_retry": True} if self.confirmed_on_retry else {}
        return {**self.result, "changed": self.changed, **confirmed}


@dataclass(frozen=True)
class Change:
    """What a write did: changed now, already so, or changed by a send whose answer was lost."""

    changed: bool
    confirmed_on_retry: bool = False

    @classmethod
    def already_so(cls, error: BadRequestError | ConflictError | NotFoundError) -> Change:
        """``error`` says the wanted state holds: this request's own change if the client sent the write again
        after a lost answer, else someone else's (or an earlier attempt's)."""
        return cls(True, True) if error.after_lost_answer else cls(False)

    def outcome(self, result: dict[str, Any]) -> Outcome:
        return Outcome(self.changed, result, self.confirmed_on_retry)


async def graph_change(client: JumpCloudClient, path: str, target_id: str, op: str, kind: str,
                       member_id: str, target_path: str) -> Change:
    """Add or remove an edge; ``changed`` False when the wanted state already held."""
    try:
        await client.request("POST", path, path_params={"id": target_id},
                             json={"op": op, "type": kind, "id": member_id})
        return Change(True)
    except ConflictError as exc:
        if op == "add":
            return Change.already_so(exc)
        raise
    except NotFoundError as exc:
        if op != "remove":
            raise
        await client.get_json(target_path, path_params={"id": target_id})  # 404 here: the target itself is gone
        return Change.already_so(exc)


GROUP_MEMBERS = "/api/v2/usergroups/{id}/members"
APP_ASSOCIATIONS = "/api/v2/applications/{id}/associations"
USER = "/api/systemusers/{id}"


async def _group_member(ctx: ActionContext, p: GroupMemberParams, op: str) -> Outcome:
    group_id, user_id = await ctx.resolve.group(p.group), await ctx.resolve.user(p.user)
    result = {"group_id": group_id, "user_id": user_id}
    if ctx.dry_run:
        return Outcome(False, result)
    change = await graph_change(ctx.api, GROUP_MEMBERS, group_id, op, "user", user_id, "/api/v2/usergroups/{id}")
    ctx.write.group_member(group_id, user_id, present=op == "add")
    return change.outcome(result)


async def _app_access(ctx: ActionContext, p: AppAccessParams, op: str) -> Outcome:
    app_id = await ctx.resolve.app(p.app)
    if p.user is not None:
        kind, principal_type, principal_id = "user", "user", await ctx.resolve.user(p.user)
    else:
        assert p.group is not None  # exactly one of user and group (AppAccessParams)
        kind, principal_type, principal_id = "user_group", "group", await ctx.resolve.group(p.group)
    result = {"app_id": app_id, f"{principal_type}_id": principal_id}
    if ctx.dry_run:
        return Outcome(False, result)
    change = await graph_change(ctx.api, APP_ASSOCIATIONS, app_id, op, kind, principal_id,
                                "/api/applications/{id}")
    ctx.write.app_access(app_id, principal_type, principal_id, present=op == "add")
    return change.outcome(result)


async def add_member(ctx, p):
    return await _group_member(ctx, p, "add")


async def remove_member(ctx, p):
    return await _group_member(ctx, p, "remove")


async def grant_app(ctx, p):
    return await _app_access(ctx, p, "add")


async def revoke_app(ctx, p):
    return await _app_access(ctx, p, "remove")


async def set_role(ctx: ActionContext, p: RoleParams) -> Outcome:
    admin_id, role = await ctx.resolve.admin(p.admin), ctx.resolve.role(p.role)
    result = {"admin_id": admin_id, "role": role}
    if ctx.dry_run:
        return Outcome(False, result)
    # JumpCloud documents no GET of one admin; the PUT is idempotent and returns the record.
    record = await ctx.api.request("PUT", "/api/users/{id}", path_params={"id": admin_id}, json={"roleName": role})
    ctx.write.admin_record(record.json())
    return Outcome(True, result)


async def _get_user(ctx: ActionContext, user_id: str) -> dict:
    return await ctx.api.get_json(USER, path_params={"id": user_id})


async def create_user(ctx: ActionContext, p: UserCreateParams) -> Outcome:
    if ctx.dry_run:
        return Outcome(False, {"email": p.email, "username": p.username})
    try:
        response = await ctx.api.request("POST", "/api/systemusers", json=p.body())
        record, change = response.json(), Change(True)
    except (ConflictError, BadRequestError) as exc:
        # JumpCloud answers a duplicate with 409 or 400: the user exists, maybe created by our own earlier
        # attempt. It is ours only if both email and username match.
        record = await _existing_user(ctx, p)
        if record is None:
            raise
        if (record.get("username") or "") != p.username or (record.get("email") or "").casefold() != p.email.casefold():
            raise InvalidRequest(f"user.create: {p.email} / {p.username} clashes with existing user {record['_id']} "
                                 f"({record.get('email')} / {record.get('username')})") from exc
        change = Change.already_so(exc)
    user = ctx.write.user_record(record)
    return change.outcome({"user_id": user.id, "status": user.status})


async def _existing_user(ctx: ActionContext, p: UserCreateParams) -> dict | None:
    for field_name, value in (("email", p.email), ("username", p.username)):
        async for page in ctx.api.list_v1("/api/systemusers", params={"filter": f"{field_name}:$eq:{value}"}):
            if page:
                return page[0]
    return None


async def _user_state(ctx: ActionContext, p: UserRefParams, wanted: str,
                      change: Callable[[ActionContext, str, dict], Awaitable[Change]]) -> Outcome:
    user_id = await ctx.resolve.user(p.user)
    if ctx.dry_run:
        return Outcome(False, {"user_id": user_id})
    record = await _get_user(ctx, user_id)
    done = await change(ctx, user_id, record)
    if done.changed:
        record = await _get_user(ctx, user_id)
    user = ctx.write.user_record(record)
    return done.outcome({"user_id": user_id, "status": user.status, "wanted": wanted})


def _active(record: dict) -> bool:
    state = record.get("state")
    return state == "ACTIVATED" or (state is None and record.get("activated") is True and not record.get("suspended"))


async def _activate(ctx: ActionContext, user_id: str, record: dict) -> Change:
    if _active(record):
        return Change(False)
    if record.get("state") == "SUSPENDED" or record.get("suspended"):
        raise InvalidRequest(f"user.activate: user {user_id} is suspended; use user.unsuspend")
    try:
        await ctx.api.request("POST", "/api/systemusers/{id}/state/activate", path_params={"id": user_id}, json={})
    except BadRequestError as exc:  # "only a STAGED user can be activated": read what the user is now
        if not _active(await _get_user(ctx, user_id)):
            raise
        return Change.already_so(exc)
    return Change(True)


async def _suspend(ctx: ActionContext, user_id: str, record: dict) -> Change:
    if record.get("state") == "SUSPENDED" and record.get("suspended") is True:
        return Change(False)
    await ctx.api.request("PUT", USER, path_params={"id": user_id}, json={"suspended": True, "state": "SUSPENDED"})
    return Change(True)


async def _unsuspend(ctx: ActionContext, user_id: str, record: dict) -> Change:
    if record.get("state") != "SUSPENDED" and not record.get("suspended"):
        return Change(False)
    await ctx.api.request("PUT", USER, path_params={"id": user_id}, json={"suspended": False, "state": "ACTIVATED"})
    return Change(True)


async def activate_user(ctx, p):
    return await _user_state(ctx, p, "active", _activate)


async def suspend_user(ctx, p):
    return await _user_state(ctx, p, "suspended", _suspend)


async def unsuspend_user(ctx, p):
    return await _user_state(ctx, p, "active", _unsuspend)


async def delete_user(ctx: ActionContext, p: UserRefParams) -> Outcome:
    user_id = await ctx.resolve.user(p.user)
    if ctx.dry_run:
        return Outcome(False, {"user_id": user_id})
    try:
        await ctx.api.request("DELETE", USER, path_params={"id": user_id})
        change = Change(True)
    except NotFoundError as exc:  # already deleted: by our own lost send, or before
        change = Change.already_so(exc)
    ctx.write.user_deleted(user_id)
    return change.outcome({"user_id": user_id})


#: Each action takes the parameters of its own ``Params`` class, as ``validate_params`` gives them.
ACTIONS: dict[str, Callable[[ActionContext, Any], Awaitable[Outcome]]] = {
    "group.add-member": add_member,
    "group.remove-member": remove_member,
    "app.grant": grant_app,
    "app.revoke": revoke_app,
    "role.set": set_role,
    "user.create": create_user,
    "user.activate": activate_user,
    "user.suspend": suspend_user,
    "user.unsuspend": unsuspend_user,
    "user.delete": delete_user,
}
