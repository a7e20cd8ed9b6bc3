"""List query parameters of the JumpCloud API: limit, skip, sort, fields, filter, in both dialects.

v1 (`/api/...`): `sort` and `fields` are space-separated, filters are `field:$op:value` with
`$eq $ne $gt $gte $lt $lte`, and the v2 form `field:op:value` works too (a public client resolves names with
`username:eq:x` on the real service). v2 (`/api/v2/...`): `sort` and `fields` are comma-separated, filters are
`field:op:value` with `eq ne gt ge lt le in search` (`in` takes `a|b|c`). In both, `-field` sorts descending and
several `filter` parameters must all hold. `limit` defaults to 10 and may not exceed 100.

Sorting follows MongoDB (which serves JumpCloud): missing and null values first, then numbers, strings,
objects, arrays, booleans; strings compare by code point, so case matters.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

V1 = "v1"
V2 = "v2"

_V1_OPS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}
_V2_OPS = {"eq", "ne", "gt", "ge", "lt", "le", "in", "search"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}
_MISSING = object()


class QueryError(Exception):
    """A query parameter JumpCloud would refuse (HTTP 400)."""


@dataclass(frozen=True)
class Filter:
    """One `field:op:value` condition; `op` is normalised to the v2 names."""

    field: str
    op: str
    value: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        actual = lookup(record, self.field)
        if self.op == "in":
            return any(_equal(actual, v) for v in self.value.split("|"))
        if self.op == "eq":
            return _equal(actual, self.value)
        if self.op == "ne":
            return not _equal(actual, self.value)
        if self.op == "search":
            return isinstance(actual, str) and self.value.casefold() in actual.casefold()
        if actual is _MISSING or actual is None:
            return False
        wanted = _coerce(self.value, actual)
        if wanted is _MISSING:
            return False
        return _COMPARE[self.op](actual, wanted)


@dataclass(frozen=True)
class ListQuery:
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    fields: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()

    @property
    def selection_key(self) -> tuple[Any, ...]:
        """What determines the full (unpaged) result: used as a cache key."""
        return (self.sort, self.filters)


def parse_list_query(
    params: Any,
    dialect: str,
    *,
    sortable: bool = True,
    filterable: bool = True,
    projectable: bool = True,
    aliases: Mapping[str, str] | None = None,
) -> ListQuery:
    """Read paging, sorting, projection and filters from query parameters (a Starlette QueryParams or a dict
    of lists). Parameters an endpoint does not support are ignored, as JumpCloud does."""
    limit = _int_param(params, "limit", DEFAULT_LIMIT)
    if limit > MAX_LIMIT:
        raise QueryError(f"limit must be less than or equal to {MAX_LIMIT}")
    skip = _int_param(params, "skip", 0)
    sep = " " if dialect == V1 else ","
    sort: tuple[tuple[str, bool], ...] = ()
    if sortable:
        sort = tuple(
            (_alias(name.lstrip("-+"), aliases), name.startswith("-"))
            for value in _all(params, "sort")
            for name in value.split(sep)
            if name.strip("-+ ")
        )
    fields: tuple[str, ...] = ()
    if projectable:
        fields = tuple(name for value in _all(params, "fields") for name in value.split(sep) if name.strip())
    filters: tuple[Filter, ...] = ()
    if filterable:
        filters = tuple(parse_filter(f, dialect, aliases) for f in _all(params, "filter") if f != "")
    return ListQuery(limit=limit, skip=skip, sort=sort, fields=fields, filters=filters)


def parse_filter(text: str, dialect: str, aliases: Mapping[str, str] | None = None) -> Filter:
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise QueryError(f"invalid filter {text!r}: expected field:operator:value")
    field, op, value = parts
    if dialect == V1 and op in _V1_OPS:
        op = _V1_OPS[op]
    elif dialect == V1 and op not in _V2_OPS:
        raise QueryError(f"invalid filter operator {op!r}: use one of {', '.join(_V1_OPS)} (or the v2 operators)")
    elif op not in _V2_OPS:
        raise QueryError(f"invalid filter operator {op!r}: use one of {', '.join(sorted(_V2_OPS))}")
    return Filter(_alias(field, aliases), op, value)


def select(records: Sequence[Mapping[str, Any]], query: ListQuery) -> Sequence[Mapping[str, Any]]:
    """Filter, then sort (stable: ties keep natural order). Returns `records` itself when there is nothing to do."""
    result: Sequence[Mapping[str, Any]] = records
    if query.filters:
        result = [r for r in result if all(f.matches(r) for f in query.filters)]
    if query.sort:
        result = list(result)
        for field, descending in reversed(query.sort):  # stable multi-key sort, least significant key first
            values = [lookup(r, field) for r in result]
            result = [result[i] for i in _sorted_indexes(values, descending)]
    return result


def page(records: Sequence[Any], query: ListQuery) -> Sequence[Any]:
    return records[query.skip: query.skip + query.limit]


def project(record: Mapping[str, Any], fields: Sequence[str], keep: Sequence[str] = ("_id", "id")) -> dict[str, Any]:
    """Only the asked fields (plus the ids, which JumpCloud always returns). No fields asked: the whole record."""
    if not fields:
        return dict(record)
    wanted = set(fields).union(keep)
    return {k: v for k, v in record.items() if k in wanted}


def lookup(record: Mapping[str, Any], field: str) -> Any:
    """A possibly dotted field (`mfa.configured`); `_MISSING` when absent."""
    value: Any = record.get(field, _MISSING)
    if value is _MISSING and "." in field:
        value = record
        for part in field.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
    return value


def sort_rank(value: Any) -> int:
    """MongoDB's order of types: missing/null, numbers, strings, objects, arrays, booleans."""
    if value is _MISSING or value is None:
        return 0
    if isinstance(value, bool):
        return 5
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, Mapping):
        return 3
    return 4


_COMPARABLE_RANKS = (1, 2, 5)  # values of other ranks are equal to each other (kept in natural order)


def _sorted_indexes(values: list[Any], descending: bool) -> list[int]:
    """Indexes of `values` in sort order, stable. Values are bucketed by type rank and only compared within a
    bucket, which is both Mongo's rule and much faster than sorting by (rank, value) tuples."""
    if all(type(v) is str for v in values):  # the common case: `_id`, `email`, `name`...
        return sorted(range(len(values)), key=values.__getitem__, reverse=descending)
    buckets: list[list[int]] = [[] for _ in range(6)]
    for i, v in enumerate(values):
        buckets[sort_rank(v)].append(i)
    order: list[int] = []
    for rank in (range(5, -1, -1) if descending else range(6)):
        bucket = buckets[rank]
        if rank in _COMPARABLE_RANKS:
            bucket.sort(key=values.__getitem__, reverse=descending)
        order += bucket
    return order


def _equal(actual: Any, text: str) -> bool:
    if actual is _MISSING:
        return False
    if actual is None:
        return text == "null"
    wanted = _coerce(text, actual)
    return wanted is not _MISSING and actual == wanted


def _coerce(text: str, like: Any) -> Any:
    """The filter value as the type of the record's value (filters arrive as text)."""
    if isinstance(like, bool):
        return {"true": True, "false": False}.get(text.lower(), _MISSING)
    if isinstance(like, (int, float)):
        try:
            return float(text)
        except ValueError:
            return _MISSING
    if isinstance(like, str):
        return text
    return _MISSING


def _alias(field: str, aliases: Mapping[str, str] | None) -> str:
    return aliases.get(field, field) if aliases else field


def _all(params: Any, name: str) -> list[str]:
    if hasattr(params, "getlist"):
        return params.getlist(name)
    value = params.get(name, [])
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _int_param(params: Any, name: str, default: int) -> int:
    values = _all(params, name)
    if not values or values[-1] == "":
        return default
    try:
        number = int(values[-1])
    except ValueError:
        raise QueryError(f"{name} must be an integer") from None
    if number < 0:
        raise QueryError(f"{name} must be greater than or equal to 0")
    return number
