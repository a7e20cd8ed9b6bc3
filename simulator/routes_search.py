"""`POST /api/search/systemusers` (v1 spec `search_systemusers_post`, operation `User_Search`).

The body (spec `Search`) carries what a GET listing carries in its query string, in JSON:

- `filter`: query expressions `{"field": value}` (exact match, the record's type), either a list (all must hold,
  as the spec's first sample sends) or an object with one key, `and` (all) or `or` (any), holding that list;
- `searchFilter`: `{"searchTerm": "text" | ["text", ...], "fields": ["email", ...]}`: a record matches when one
  of the fields contains one of the terms (case-insensitive substring, as `search` filters are);
- `fields`: space-separated, as on v1 lists; `limit` and `skip` as on v1 lists.

`limit`, `skip`, `fields` and `sort` may also come in the query string (a generated SDK sends them there); the
body wins. The answer is the v1 envelope (`systemUsersSearchlist`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.query import V1, parse_list_query, select
from simulator.responses import ApiError, json_body, tenant_of, v1_list

Predicate = Callable[[Mapping[str, Any]], bool]


async def search_systemusers(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request)
    params = {k: request.query_params.getlist(k) for k in request.query_params.keys()}
    for key in ("limit", "skip", "fields"):
        if key in body:
            value = body[key]
            if key == "fields" and not isinstance(value, str):
                raise ApiError(400, "Bad Request: fields must be a space-separated string")
            if key != "fields" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ApiError(400, f"Bad Request: {key} must be an integer")
            params[key] = [str(value)]
    params.pop("filter", None)  # the search takes its filter from the body only
    query = parse_list_query(params, V1)
    tests = [t for t in (_filter_test(body.get("filter")), _search_test(body.get("searchFilter"))) if t]
    records = [r for r in tenant.records("users") if all(t(r) for t in tests)]
    return v1_list(select(records, query), query)


def _filter_test(spec: Any) -> Predicate | None:
    """The `filter` of a search body as a predicate; None when there is none."""
    if spec is None or spec == {} or spec == []:
        return None
    combine = all
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in ("and", "or"):
            raise ApiError(400, 'Bad Request: filter must be a list of expressions, or {"and"|"or": [...]}')
        combine = all if "and" in spec else any
        spec = spec.get("and", spec.get("or"))
    if not isinstance(spec, list) or not all(isinstance(e, dict) and e for e in spec):
        raise ApiError(400, "Bad Request: filter expressions must be objects of field: value")
    expressions: list[dict[str, Any]] = spec
    return lambda record: combine(_holds(record, e) for e in expressions)


def _holds(record: Mapping[str, Any], expression: dict[str, Any]) -> bool:
    for field, wanted in expression.items():
        if isinstance(wanted, (dict, list)):
            raise ApiError(400, f"Bad Request: unsupported filter value for {field}")
        if record.get(field) != wanted:
            return False
    return True


def _search_test(spec: Any) -> Predicate | None:
    """The `searchFilter` of a search body as a predicate; None when there is none."""
    if spec is None or spec == {}:
        return None
    if not isinstance(spec, dict):
        raise ApiError(400, "Bad Request: searchFilter must be an object")
    terms, fields = spec.get("searchTerm"), spec.get("fields")
    if isinstance(terms, str):
        terms = [terms]
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ApiError(400, "Bad Request: searchFilter.searchTerm must be a string or a list of strings")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise ApiError(400, "Bad Request: searchFilter.fields must be a list of field names")
    folded = [t.casefold() for t in terms]

    def matches(record: Mapping[str, Any]) -> bool:
        values = [v.casefold() for v in (record.get(f) for f in fields) if isinstance(v, str)]
        return any(t in v for t in folded for v in values)

    return matches


ROUTES = [Route("/api/search/systemusers", search_systemusers, methods=["POST"])]
