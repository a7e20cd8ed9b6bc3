"""Turning what a person typed into JumpCloud ids: the synced database first, then the API.

A reference is an id (24 hex characters), or an email or username (accounts), or a name (groups, apps, roles;
an app also by its template name; case-insensitive): the rules of models.resolver, which answers the database
step. Several matches is an error that lists them, never a guess; none names the closest candidates. In dry-run
mode there is no client, so only the database is asked.

The runner hands the resolver the request's connection, so that every look-up of a request shares one pool
checkout; each look-up runs in autocommit mode on it, so that no transaction is open while the request then waits
for JumpCloud (the request's transaction begins with its write-through, after JumpCloud answered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select

from connector.admins import map_admin
from connector.apps import map_app
from connector.groups import map_group
from connector.roles import BUILTIN_ROLES, role_id
from connector.users import map_user
from jumpcloud.client import JumpCloudClient
from jumpcloud.errors import NotFoundError
from jumpcloud.ids import is_object_id
from models import resolver
from models.db import autocommit
from models.lookup import rows_by_keys
from models.store import RESOURCE_KEY
from models.tables import Resource, table_of
from provisioning.params import InvalidRequest, Params

_RESOURCES = table_of(Resource)

#: The parameters that name a resource, and its type.
REFERENCE_TYPES = {"group": "group", "user": "user", "app": "app", "admin": "admin"}

class UnknownName(InvalidRequest):
    pass


class AmbiguousName(InvalidRequest):
    pass


def _one(kind: str, ref: str, ids: list[str], where: str) -> str | None:
    unique = sorted(set(ids))
    if len(unique) > 1:
        raise AmbiguousName(f"{kind} {ref!r} is ambiguous: {len(unique)} match in {where} "
                            f"({', '.join(unique[:5])}); name it by id")
    return unique[0] if unique else None


class Resolver:
    """``bind``: an engine (a connection for each look-up) or a connection that the caller owns and that is not
    in a transaction (every look-up runs on it in autocommit mode; the resolver does not close it)."""

    def __init__(self, bind: Engine | Connection, connector_id: int, client: JumpCloudClient | None) -> None:
        self.bind = bind
        self.connector_id = connector_id
        self.client = client
        self._known_ids: dict[tuple[str, str], bool] = {}  # (type, id) -> live in the database (prefetch_ids)

    # --- the database ---------------------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if isinstance(self.bind, Connection):
            with autocommit(self.bind):
                yield self.bind
            return
        with self.bind.connect() as connection:
            yield connection

    def prefetch_ids(self, params: Params) -> None:
        """Look up every reference of ``params`` that is an id, in one query, for the look-ups that follow (a
        membership names a group and a user: one round trip instead of two). Names are left to their look-ups."""
        wanted = [(REFERENCE_TYPES[field], ref) for field, ref in params if field in REFERENCE_TYPES
                  and isinstance(ref, str) and is_object_id(ref)]
        if not wanted:
            return
        with self._connection() as connection:
            found = {(kind, rid) for _, kind, rid in rows_by_keys(
                connection, _RESOURCES, RESOURCE_KEY, [(self.connector_id, kind, ref) for kind, ref in wanted],
                RESOURCE_KEY, live_only=True)}
        self._known_ids.update({key: key in found for key in wanted})

    def _db_by_id(self, resource_type: str, ref: str) -> list[str]:
        known = self._known_ids.get((resource_type, ref))
        if known is not None:
            return [ref] if known else []
        return self._db(resource_type, ref)

    async def _by_id(self, resource_type: str, ref: str, path: str) -> str | None:
        """``ref``, if the synced database or else JumpCloud (at ``path``) has an object with that id."""
        known = self._db_by_id(resource_type, ref)
        return known[0] if known else await self._api_exists(resource_type, ref, path)

    def _db(self, resource_type: str, ref: str) -> list[str]:
        """Ids of the live resources that ``ref`` names in the synced database (models.resolver's rules)."""
        with self._connection() as connection:
            return [row.external_id for row in resolver.matches(connection, self.connector_id, resource_type, ref)]

    def _closest(self, kind: str, ref: str) -> str:
        """Candidates for a mistyped name of ``kind`` (as messages say it: ``application``); none for an id
        (nobody means an id that looks like another)."""
        if is_object_id(ref):
            return ""
        resource_type = "app" if kind == "application" else kind
        with self._connection() as connection:
            return resolver.did_you_mean(resolver.closest(connection, self.connector_id, (resource_type,), ref))

    # --- the API ----------------------------------------------------------------------------------------------
    def _need_client(self, kind: str, ref: str) -> JumpCloudClient:
        if self.client is None:
            raise UnknownName(f"{kind} {ref!r} is not in the synced database (a dry run does not ask JumpCloud)"
                              + self._closest(kind, ref))
        return self.client

    async def _api_exists(self, kind: str, ref: str, path: str) -> str | None:
        try:
            await self._need_client(kind, ref).get_json(path, path_params={"id": ref})
        except NotFoundError:
            return None
        return ref

    async def _api_ids(self, kind: str, ref: str, lister: Callable, path: str, params: dict,
                       mapper: Callable) -> list[str]:
        self._need_client(kind, ref)
        ids: list[str] = []
        async for page in lister(path, params=params):
            ids.extend(mapper(record).id for record in page)
        return ids

    def _unknown(self, kind: str, ref: str, how: str) -> UnknownName:
        return UnknownName(f"unknown {kind} {ref!r}: no {kind} with that {how} in the synced database or JumpCloud"
                           + self._closest(kind, ref))

    # --- per kind ---------------------------------------------------------------------------------------------
    async def user(self, ref: str) -> str:
        if is_object_id(ref):
            by_id = await self._by_id("user", ref, "/api/systemusers/{id}")
            if by_id:
                return by_id
            raise self._unknown("user", ref, "id")
        field, how = ("email", "email") if "@" in ref else ("username", "username")
        found = _one("user", ref, self._db("user", ref), "the synced database")
        if found:
            return found
        client = self._need_client("user", ref)
        api = await self._api_ids("user", ref, client.list_v1, "/api/systemusers",
                                  {"filter": f"{field}:$eq:{ref}"}, map_user)
        found = _one("user", ref, api, "JumpCloud")
        if found:
            return found
        raise self._unknown("user", ref, how)

    async def admin(self, ref: str) -> str:
        db = self._db_by_id("admin", ref) if is_object_id(ref) else self._db("admin", ref)
        found = _one("admin", ref, db, "the synced database")
        if found:
            return found
        client = self._need_client("admin", ref)  # admins are few: list them all rather than trust a filter
        matches = []
        async for page in client.list_v1("/api/users"):
            for admin in map(map_admin, page):
                if admin.id == ref or (admin.email or "").casefold() == ref.casefold():
                    matches.append(admin.id)
        found = _one("admin", ref, matches, "JumpCloud")
        if found:
            return found
        raise self._unknown("admin", ref, "id or email")

    async def group(self, ref: str) -> str:
        if is_object_id(ref):
            by_id = await self._by_id("group", ref, "/api/v2/usergroups/{id}")
            if by_id:
                return by_id
        found = _one("group", ref, self._db("group", ref), "the synced database")
        if found:
            return found
        client = self._need_client("group", ref)
        api = await self._api_ids("group", ref, client.list_v2, "/api/v2/usergroups", {"filter": f"name:eq:{ref}"},
                                  map_group)
        found = _one("group", ref, api, "JumpCloud")
        if found:
            return found
        raise self._unknown("group", ref, "id or name")

    async def app(self, ref: str) -> str:
        if is_object_id(ref):
            by_id = await self._by_id("app", ref, "/api/applications/{id}")
            if by_id:
                return by_id
        found = _one("application", ref, self._db("app", ref), "the synced database")
        if found:
            return found
        client = self._need_client("application", ref)
        for field in ("displayLabel", "name"):
            api = await self._api_ids("application", ref, client.list_v1, "/api/applications",
                                      {"filter": f"{field}:$eq:{ref}"}, map_app)
            found = _one("application", ref, api, "JumpCloud")
            if found:
                return found
        raise self._unknown("application", ref, "id, name or template name")

    def role(self, ref: str) -> str:
        """The role's name as JumpCloud knows it: a built-in role, or a custom one seen on an admin."""
        wanted = role_id(ref)
        for name in BUILTIN_ROLES:
            if role_id(name) == wanted:
                return name
        table = _RESOURCES
        with self._connection() as connection:
            known = connection.execute(select(table.c.external_id, table.c.name).where(
                table.c.connector_id == self.connector_id, table.c.type == "role",
                table.c.deleted_at.is_(None))).all()
        for rid, name in known:
            if rid == wanted:
                return name
        names = sorted(set(BUILTIN_ROLES) | {name for _, name in known})
        raise UnknownName(f"unknown role {ref!r}{resolver.suggest(ref, names)}; known roles: {', '.join(names)}")
