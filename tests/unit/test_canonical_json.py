"""connector.records.canonical_json: orjson's bytes equal the json module's for JSON-shaped records, so content
hashes stored before orjson stay valid; what orjson refuses still hashes."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.records import ResourceRecord, canonical_json, json_text

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


def stdlib(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


@settings(max_examples=300, derandomize=True)
@given(JSONISH)
def test_same_bytes_as_the_json_module(value):
    assert canonical_json(value) == stdlib(value)


def test_what_orjson_refuses_falls_back_to_json():
    for value in ({"big": 2**70}, {"lone": "\ud800"}):
        assert canonical_json(value) == stdlib(value)
        assert json.loads(json_text(value)) is not None


def test_content_hash_is_the_hash_of_the_canonical_bytes():
    record = ResourceRecord(type="user", id="u1", name="Zoë", email=None, status="active", profile={"b": 1, "a": [2]})
    assert record.content_hash() == hashlib.sha1(stdlib(["Zoë", None, "active", {"a": [2], "b": 1}])).hexdigest()


def test_api_bodies_orjson_refuses_are_still_read_and_bad_ones_named():
    import httpx
    import pytest

    from jumpcloud.errors import BadResponseError
    from jumpcloud.paging import parse_json

    def response(body: bytes) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"},
                              request=httpx.Request("GET", "https://console.jumpcloud.com/api/systemusers"))

    assert parse_json(response(b'{"results": [{"n": 1}]}')) == {"results": [{"n": 1}]}
    assert parse_json(response(b'{"big": 1180591620717411303424}')) == {"big": 2**70}  # past orjson's 64 bits
    assert parse_json(response(b'{"x": NaN}'))["x"] != 0  # json reads NaN; orjson does not
    with pytest.raises(BadResponseError, match="invalid JSON"):
        parse_json(response(b'{"results": [tru'))
