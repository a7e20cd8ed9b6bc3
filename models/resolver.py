"""What a person typed, as resources of the synced database: the one set of rules for every command.

| kind | matched by (case-insensitive; an id wins over everything) |
|---|---|
| user | id, email, username |
| admin | id, email |
| group, role | id, name |
| app | id, label (its name here), else template name (``profile["template"]``, e.g. ``aws-sso``) |

An id match wins over a name, a name over an app's template name. Several matches is an error that lists them (``Ambiguous``), never a guess; none is ``NotFound``, which carries
the closest candidates ("did you mean": names that begin with the reference, then names that contain it, then
names within a small edit distance; ``config.names.rank``). ``access``, ``who-has``,
``provision`` (its database step; provisioning.resolve asks JumpCloud after it) and the ``requests`` filters
all resolve here. Finding candidates runs only when a look-up failed: for accounts, among those whose email,
username or name begins as the reference does (an index range, not a read of 100k accounts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, union_all

from config.names import closest_words, rank, suggest  # noqa: F401  (closest_words, suggest: re-exported)
from models.names import lookup_key
from models.tables import Resource, table_of

R = table_of(Resource)

#: Matches kept when a reference is ambiguous, and candidates offered when it matches nothing.
MAX_CANDIDATES = 5

ACCOUNT_TYPES = ("user", "admin")
#: What each kind is matched by, for messages.
MATCHED_BY = {"user": "id, email or username", "admin": "id or email", "group": "id or name",
              "role": "id or name", "app": "id, name or template name"}
_ROW_COLUMNS = (R.c.type, R.c.external_id, R.c.name, R.c.email, R.c.status, R.c.profile, R.c.linked_user_id,
                R.c.email_key, R.c.deleted_at)


class NotFound(LookupError):
    """Nothing matches; ``candidates`` are the closest live resources (possibly none)."""

    def __init__(self, message: str, candidates: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


class Ambiguous(LookupError):
    """Several accounts or resources match; ``candidates`` lists them so the caller can ask by id."""

    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.candidates = candidates


def candidate(row) -> dict[str, Any]:
    """A resource as an error lists it (and ``access --json`` shows a person's accounts)."""
    profile = row.profile or {}
    found = {"type": row.type, "id": row.external_id, "name": row.name}
    if row.type in ACCOUNT_TYPES:
        found.update(email=row.email, status=row.status,
                     username=profile.get("username") if row.type == "user" else None)
    if row.type == "app" and profile.get("template"):
        found["template"] = profile["template"]
    return found


def describe(found: dict[str, Any]) -> str:
    """``app 5f…: AWS (prod) (template aws-sso)``: one candidate on one line."""
    extra = [str(found[k]) for k in ("email", "username", "status") if found.get(k)]
    extra += [f"template {found['template']}"] if found.get("template") else []
    return f"{found['type']} {found['id']}: {found['name']}" + (f" ({', '.join(extra)})" if extra else "")


def did_you_mean(candidates: Iterable[dict[str, Any]]) -> str:
    """The candidates for a one-line message: ``; did you mean: AWS (prod) (app 5f…), …`` or ``""``."""
    listed = [f"{c['name']} ({c['type']} {c['id']})" for c in candidates]
    return f"; did you mean: {', '.join(listed)}" if listed else ""


# --- matching -----------------------------------------------------------------------------------------------------

#: The columns besides the id that name a resource of each kind (case-folded ``*_key`` columns).
_KEY_COLUMNS = {"user": ("email_key", "username_key"), "admin": ("email_key",), "group": ("name_key",),
                "role": ("name_key",), "app": ("name_key",)}


@lru_cache(maxsize=None)
def _matching(kind: str, live: bool):
    """One statement per kind: the rows whose id or any key column matches, as a UNION ALL of one index search per
    column (an OR of them lets SQLite read every row of the type instead); built once, as provisioning resolves two
    or three references a request and building it cost more than running it."""
    def where(condition):
        query = select(*_ROW_COLUMNS).where(R.c.connector_id == bindparam("connector_id"), R.c.type == kind, condition)
        return query.where(R.c.deleted_at.is_(None)) if live else query

    return union_all(where(R.c.external_id.in_([bindparam("text"), bindparam("lower")])),
                     *(where(R.c[column] == bindparam("key")) for column in _KEY_COLUMNS[kind]))


def _apps_by_template(connection: Connection, cid: int, key: str, live: bool) -> list:
    """Apps whose template name is ``key``: a JSON field, read for the connector's apps (they are few)."""
    query = select(*_ROW_COLUMNS).where(R.c.connector_id == cid, R.c.type == "app")
    if live:
        query = query.where(R.c.deleted_at.is_(None))
    return [row for row in connection.execute(query)
            if isinstance((row.profile or {}).get("template"), str) and lookup_key(row.profile["template"]) == key]


def matches(connection: Connection, cid: int, kind: str, ref: str, *, live: bool = True) -> list:
    """Every resource of ``kind`` that ``ref`` names, in id order: those it names by id if any, else by name
    (email, username), else (apps) by template name."""
    text = ref.strip()
    rows = list(connection.execute(_matching(kind, live), {"connector_id": cid, "text": text, "lower": text.lower(),
                                                           "key": lookup_key(ref)}))
    by_id = [row for row in rows if row.external_id in (text, text.lower())]
    rows = by_id or rows
    if not rows and kind == "app":
        rows = _apps_by_template(connection, cid, lookup_key(ref), live)
    unique = {row.external_id: row for row in rows}
    return [unique[k] for k in sorted(unique)]


def resolve(connection: Connection, cid: int, kind: str, ref: str):
    """The one live resource of ``kind`` that ``ref`` names; Ambiguous or NotFound (with candidates) otherwise."""
    found = matches(connection, cid, kind, ref)
    if len(found) > 1:
        raise Ambiguous(f"{len(found)} live {kind}s match {ref!r}; give one's id",
                        [candidate(row) for row in found[:MAX_CANDIDATES * 4]])
    if found:
        return found[0]
    if matches(connection, cid, kind, ref, live=False):
        raise NotFound(f"{ref!r} matches only {kind}s deleted in JumpCloud")
    raise NotFound(f"no live {kind} with {MATCHED_BY[kind]} {ref!r}", closest(connection, cid, (kind,), ref))


# --- who is this person? ------------------------------------------------------------------------------------------

def find_accounts(connection, cid: int, query: str, *, live: bool = True) -> tuple[list, list]:
    """Users and admins that ``query`` names: by id (exact; wins over everything), else by email (both types)
    or username (users), case-insensitively."""
    users = matches(connection, cid, "user", query, live=live)
    admins = matches(connection, cid, "admin", query, live=live)
    if any(row.external_id == query.strip() for row in users + admins):  # an id wins over an email or username
        users = [row for row in users if row.external_id == query.strip()]
        admins = [row for row in admins if row.external_id == query.strip()]
    return users, admins


def resolve_person(connection, cid: int, query: str) -> tuple[Any | None, list]:
    """The person's live user account (or None) and their live admin accounts.

    Admins link to users through ``linked_user_id``; an admin named by the query that links to another user
    than the one named makes the query ambiguous. Without a user account, the admins named by the query are
    the person (several only when they share an email).
    """
    users, admins = find_accounts(connection, cid, query)
    linked_ids = sorted({a.linked_user_id for a in admins if a.linked_user_id} - {u.external_id for u in users})
    if linked_ids:
        users += connection.execute(select(*_ROW_COLUMNS).where(
            R.c.connector_id == cid, R.c.type == "user", R.c.external_id.in_(linked_ids),
            R.c.deleted_at.is_(None))).all()
    if len(users) > 1:
        raise Ambiguous(f"{query!r} matches {len(users)} users; give one's id",
                        [candidate(u) for u in sorted(users, key=lambda u: u.external_id)])
    if users:
        user = users[0]
        linked = connection.execute(select(*_ROW_COLUMNS).where(
            R.c.connector_id == cid, R.c.type == "admin", R.c.linked_user_id == user.external_id,
            R.c.deleted_at.is_(None))).all()
        found = {a.external_id: a for a in [*linked, *admins] if a.linked_user_id in (None, user.external_id)}
        return user, [found[k] for k in sorted(found)]
    if admins:
        emails = {a.email_key for a in admins}
        if len(admins) > 1 and (len(emails) > 1 or None in emails):
            raise Ambiguous(f"{query!r} matches {len(admins)} admins; give one's id", [candidate(a) for a in admins])
        return None, admins
    gone_users, gone_admins = find_accounts(connection, cid, query, live=False)
    if gone_users or gone_admins:
        raise NotFound(f"{query!r} matches only accounts deleted in JumpCloud")
    raise NotFound(f"no user or admin with id, email or username {query!r}",
                   closest(connection, cid, ACCOUNT_TYPES, query))


# --- did you mean -------------------------------------------------------------------------------------------------

def _keys(row) -> list[str]:
    """What a candidate is compared on: the forms a person might have meant to type."""
    keys = [row.external_id, lookup_key(row.name or "")]
    keys += [row.email_key] if row.email_key else []
    profile = row.profile or {}
    for field in ("username", "template"):
        if isinstance(profile.get(field), str):
            keys.append(lookup_key(profile[field]))
    return keys


def _account_pool(connection: Connection, cid: int, kinds: tuple[str, ...], key: str) -> list:
    """Accounts whose email, username or name begins as ``key`` does: the longest prefix (4 characters down to
    1) that finds any, at most 500 of them."""
    for length in range(min(4, len(key)), 0, -1):
        prefix = key[:length]
        rows = list(connection.execute(select(*_ROW_COLUMNS).where(
            R.c.connector_id == cid, R.c.type.in_(kinds), R.c.deleted_at.is_(None),
            or_(R.c.email_key.startswith(prefix, autoescape=True), R.c.username_key.startswith(prefix, autoescape=True),
                R.c.name_key.startswith(prefix, autoescape=True))).limit(500)))
        if rows:
            return rows
    return []


def closest(connection: Connection, cid: int, kinds: Sequence[str], ref: str,
            limit: int = MAX_CANDIDATES) -> list[dict[str, Any]]:
    """The live resources of ``kinds`` closest to ``ref``, best first (``config.names.rank``: a name that begins
    with it, then one that contains it, then one within a small edit distance)."""
    key = lookup_key(ref)
    if not key:
        return []
    kinds = tuple(kinds)
    accounts = tuple(k for k in kinds if k in ACCOUNT_TYPES)
    pool = _account_pool(connection, cid, accounts, key) if accounts else []
    others = tuple(k for k in kinds if k not in ACCOUNT_TYPES)
    if others:
        pool += list(connection.execute(select(*_ROW_COLUMNS).where(
            R.c.connector_id == cid, R.c.type.in_(others), R.c.deleted_at.is_(None))))
    scored = sorted(((score, row.type, row.external_id, row) for row in pool
                     if (score := rank(key, _keys(row))) is not None), key=lambda s: (-s[0], s[1], s[2]))
    return [candidate(row) for *_, row in scored[:limit]]
