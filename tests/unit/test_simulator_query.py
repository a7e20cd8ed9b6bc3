"""The simulator's query parameters without HTTP: dialects, MongoDB sort order, filter typing."""

from __future__ import annotations

import pytest

from simulator.query import V1, V2, Filter, QueryError, parse_list_query, project, select

MISSING = object()


def q(dialect: str = V1, **params):
    return parse_list_query({k: v if isinstance(v, list) else [v] for k, v in params.items()}, dialect)


def test_defaults_and_limits():
    query = q()
    assert (query.limit, query.skip, query.sort, query.fields, query.filters) == (10, 0, (), (), ())
    assert q(limit="100").limit == 100 and q(limit="0").limit == 0
    with pytest.raises(QueryError, match="100"):
        q(limit="101")


def test_separators_differ_between_dialects():
    assert q(V1, sort="-name _id").sort == (("name", True), ("_id", False))
    assert q(V2, sort="-name,id").sort == (("name", True), ("id", False))
    assert q(V1, sort="name,_id").sort == (("name,_id", False),)  # a v1 server reads one (unknown) field
    assert q(V1, fields="email username").fields == ("email", "username")
    assert q(V2, fields="name,email").fields == ("name", "email")


def test_filter_operators_per_dialect():
    assert q(V1, filter="email:$eq:a:b@c").filters == (Filter("email", "eq", "a:b@c"),)
    assert q(V2, filter="n:ge:3").filters == (Filter("n", "ge", "3"),)
    assert q(V1, filter="username:eq:x").filters == (Filter("username", "eq", "x"),)  # v2 form on v1
    for dialect, text in ((V1, "a:like:1"), (V2, "a:$eq:1"), (V2, "a:between:1"), (V1, "a"), (V2, ":eq:1")):
        with pytest.raises(QueryError):
            q(dialect, filter=text)


RECORDS = [
    {"id": "1", "v": "b"}, {"id": "2", "v": None}, {"id": "3", "v": 5}, {"id": "4"}, {"id": "5", "v": True},
    {"id": "6", "v": "a"}, {"id": "7", "v": [1]}, {"id": "8", "v": {"x": 1}}, {"id": "9", "v": 2},
    {"id": "10", "v": "b"},
]


def ids(records):
    return [r["id"] for r in records]


def test_sort_follows_mongodb_type_order_and_is_stable():
    ascending = select(RECORDS, q(V2, sort="v"))
    assert ids(ascending) == ["2", "4", "9", "3", "6", "1", "10", "8", "7", "5"]
    descending = select(RECORDS, q(V2, sort="-v"))
    assert ids(descending) == ["5", "7", "8", "1", "10", "6", "3", "9", "2", "4"]


def test_sort_on_several_keys():
    rows = [{"id": str(i), "a": i % 2, "b": -i} for i in range(6)]
    assert ids(select(rows, q(V2, sort="a,-b"))) == ["0", "2", "4", "1", "3", "5"]
    assert ids(select(rows, q(V2, sort="-a,b"))) == ["5", "3", "1", "4", "2", "0"]


def test_filters_compare_as_the_fields_type():
    def match(text):
        return ids(select(RECORDS, q(V2, filter=text)))

    assert match("v:eq:b") == ["1", "10"]
    assert match("v:eq:5") == ["3"] and match("v:eq:5.0") == ["3"]
    assert match("v:eq:true") == ["5"]
    assert match("v:eq:null") == ["2"]
    assert match("v:ne:b") == ["2", "3", "4", "5", "6", "7", "8", "9"]  # missing fields differ too
    assert match("v:in:a|5") == ["3", "6"]
    assert match("v:search:B") == ["1", "10"]
    assert match("v:lt:b") == ["6"]
    assert ids(select(RECORDS, q(V2, filter=["v:ge:a", "id:ne:10"]))) == ["1", "6"]
    numbers = [{"id": str(n), "n": n} for n in (1, 2, 10)]
    assert ids(select(numbers, q(V1, filter="n:$gt:2"))) == ["10"]  # numerically, not as text
    assert ids(select(numbers, q(V1, filter="n:$lte:2"))) == ["1", "2"]
    assert ids(select(numbers, q(V1, filter="n:$gt:abc"))) == []


def test_dotted_filter_fields():
    rows = [{"id": "1", "mfa": {"configured": True}}, {"id": "2", "mfa": {"configured": False}}, {"id": "3"}]
    assert ids(select(rows, q(V1, filter="mfa.configured:$eq:true"))) == ["1"]


def test_projection_keeps_ids():
    record = {"_id": "x", "id": "x", "email": "e", "state": "S"}
    assert project(record, ("email",)) == {"_id": "x", "id": "x", "email": "e"}
    assert project(record, ()) == record and project(record, ()) is not record
