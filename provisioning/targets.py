"""What a request targets, as a person reads it: ``group:Engineering user:alice@example.com``.

A request's parameters name resources as typed (an id, a name, an email). A list of requests shows them with the
names the synced database knows for ids, read in one query for the whole list; a name as typed is shown as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select

from models.lookup import rows_by_keys
from models.tables import Connector, Resource, table_of

R, C = table_of(Resource), table_of(Connector)

#: The parameters that name what a request changes, in the order they are shown, and the kind each names.
TARGET_PARAMS = (("group", "group"), ("app", "app"), ("role", "role"), ("admin", "admin"), ("user", "user"),
                 ("email", "user"), ("username", None))


def _refs(request: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    params = request.get("params")
    if not isinstance(params, dict):
        return []
    return [(key, kind, str(params[key])) for key, kind in TARGET_PARAMS if params.get(key) not in (None, "")]


def _names(engine: Engine, wanted: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """``(connector, type, id) -> name`` (an account's email) of the wanted resources the database knows."""
    if not wanted:
        return {}
    with engine.connect() as connection:
        cids = dict(connection.execute(select(C.c.name, C.c.id).where(C.c.name.in_({c for c, _, _ in wanted}))).all())
        names = {cid: name for name, cid in cids.items()}
        keys = sorted((cids[c], kind, ref) for c, kind, ref in wanted if c in cids)
        rows = rows_by_keys(connection, R, ("connector_id", "type", "external_id"), keys,
                            ("connector_id", "type", "external_id", "name", "email"))
    return {(names[row.connector_id], row.type, row.external_id): row.email or row.name
            for row in rows if row.email or row.name}


def targets(engine: Engine, requests: Iterable[dict[str, Any]]) -> list[str]:
    """For each request, what it targets: ``kind:name`` for each parameter that names a resource, the name the
    database knows for an id (as typed otherwise)."""
    requests = list(requests)
    refs = [_refs(request) for request in requests]
    wanted = {(request["connector"], kind, value) for request, found in zip(requests, refs, strict=True)
              for _, kind, value in found if kind is not None}
    names = _names(engine, wanted)
    return [" ".join(f"{key}:{names.get((request['connector'], kind or '', value), value)}"
                     for key, kind, value in found)
            for request, found in zip(requests, refs, strict=True)]
