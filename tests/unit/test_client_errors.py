"""Error mapping and messages, and that the API key never leaks through an error."""

from __future__ import annotations

import pickle
import traceback

import httpx
import pytest

from jumpcloud import (
    AuthError,
    BadRequestError,
    BadResponseError,
    ConflictError,
    JumpCloudClient,
    JumpCloudError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    errors,
)
from tests.support.fake_jumpcloud import BASE, KEY, collect, fake_client, json_response, run


def _fail(handler, call=None, **kwargs) -> JumpCloudError:
    client, _ = fake_client(handler, retry=RetryPolicy(max_attempts=2, rng=lambda: 0.0), **kwargs)

    async def go():
        async with client:
            if call is None:
                await client.get_json("/api/systemusers")
            else:
                await call(client)

    with pytest.raises(JumpCloudError) as info:
        run(go())
    return info.value


# -- messages ------------------------------------------------------------------------


def test_message_from_jumpcloud_401_body():
    err = _fail(lambda r: json_response(401, {"error": "Unauthorized",
                                              "message": "Unauthorized: api key user not found"}))
    assert isinstance(err, AuthError)
    assert str(err) == "GET /api/systemusers: 401 Unauthorized: api key user not found"
    assert (err.status, err.method, err.path) == (401, "GET", "/api/systemusers")
    assert err.message == "Unauthorized: api key user not found"


def test_message_falls_back_to_error_field_then_text():
    err = _fail(lambda r: json_response(400, {"error": "invalid filter"}))
    assert str(err) == "GET /api/systemusers: 400 Bad Request: invalid filter"
    err = _fail(lambda r: httpx.Response(404, text="no such thing"))
    assert str(err) == "GET /api/systemusers: 404 Not Found: no such thing"
    err = _fail(lambda r: httpx.Response(403))
    assert str(err) == "GET /api/systemusers: 403 Forbidden"


def test_v2_error_with_details():
    body = {"message": "Bad Request: invalid object id", "status": "400", "details": [{"x": 1}]}
    err = _fail(lambda r: json_response(400, body))
    assert isinstance(err, BadRequestError)
    assert str(err) == "GET /api/systemusers: 400 Bad Request: invalid object id"


def test_path_without_query_in_errors():
    async def call(client):
        await client.request("GET", "/api/systemusers", params={"filter": "email:$eq:x@y.z"})

    err = _fail(lambda r: json_response(404, {"message": "nope"}), call)
    assert err.path == "/api/systemusers"


@pytest.mark.parametrize("status,cls", [
    (400, BadRequestError), (401, AuthError), (403, AuthError), (404, NotFoundError),
    (409, ConflictError), (418, BadRequestError), (429, RateLimitedError),
    (500, ServerError), (503, ServerError), (599, ServerError), (302, BadResponseError),
])
def test_error_for_status(status, cls):
    err = errors.error_for_status(status, "PUT", "/api/x", "m")
    assert type(err) is cls and isinstance(err, JumpCloudError)


def test_errors_pickle_round_trip():
    err = errors.ServerError(503, "GET", "/api/x", "busy", attempts=5)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ServerError and str(copy) == str(err) and copy.attempts == 5


# -- the key never leaks -------------------------------------------------------------


def _no_key_anywhere(err: BaseException) -> None:
    assert KEY not in str(err)
    assert KEY not in repr(err)
    text = "".join(traceback.format_exception(err))
    assert KEY not in text
    assert KEY.encode() not in pickle.dumps(err)
    # Walk the whole chain: no exception in it may hold a request or response
    # (their headers hold the key), as httpx's own exceptions do.
    seen = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        assert getattr(node, "_request", None) is None
        for value in vars(node).values():
            assert not isinstance(value, (httpx.Request, httpx.Response))
            assert KEY not in repr(value)
        node = node.__cause__ or node.__context__


def _raise(exc):
    def handler(request):
        raise exc
    return handler


SCENARIOS = {
    "401": lambda r: json_response(401, {"error": "Unauthorized", "message": "Unauthorized: api key user not found"}),
    "403": lambda r: json_response(403, {"message": "Forbidden"}),
    "404": lambda r: json_response(404, {"message": "not found"}),
    "409": lambda r: json_response(409, {"message": "already a member"}),
    "500": lambda r: json_response(500, {"message": "oops"}),
    "429": lambda r: json_response(429, {"message": "too many"}),
    "invalid-json": lambda r: httpx.Response(200, content=b"<html>"),
    "echoed-key": lambda r: json_response(401, {"message": f"key {r.headers['x-api-key']} is revoked"}),
    "echoed-key-text": lambda r: httpx.Response(401, text=f"bad key {r.headers['x-api-key']}"),
    "connect-error": _raise(httpx.ConnectError("[Errno 111] Connection refused")),
    "read-timeout": _raise(httpx.ReadTimeout("timed out")),
    "unsupported": _raise(httpx.UnsupportedProtocol("Request URL has an unsupported protocol")),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_key_never_in_errors(name):
    err = _fail(SCENARIOS[name], org_id="org1")
    _no_key_anywhere(err)


def test_transport_error_chain_holds_no_request():
    def handler(request):
        # Like a real httpx failure: the exception carries the request, and a
        # lower-level cause, and its message may mention the key (worst case).
        try:
            raise OSError(f"socket trouble for {request.headers['x-api-key']}")
        except OSError as low:
            raise httpx.ConnectError(f"failed with {request.headers['x-api-key']}", request=request) from low

    err = _fail(handler)
    assert isinstance(err, TransportError) and err.status is None
    _no_key_anywhere(err)
    assert isinstance(err.__cause__, httpx.ConnectError)
    assert err.__cause__.__cause__ is None and err.__cause__.__context__ is None
    assert err.__context__ is None
    assert "<redacted>" in str(err)


def test_key_never_in_listing_errors():
    def handler(request):
        if request.url.params["skip"] == "0":
            return json_response(200, {"totalCount": 300, "results": [{"_id": "a"}] * 100})
        raise httpx.ReadError("connection reset", request=request)

    async def call(client):
        await collect(client.list_v1("/api/systemusers"))

    err = _fail(handler, call)
    assert isinstance(err, TransportError)
    _no_key_anywhere(err)


def test_key_not_in_client_repr_or_vars():
    client, _ = fake_client(lambda r: json_response(200, {}))
    assert KEY not in repr(client)
    assert KEY not in repr(client._http.headers)
    assert KEY not in repr(client._http.auth)
    run(client.aclose())


def test_bad_key_value_not_echoed():
    bad = "clé-secrète-ünicode"
    with pytest.raises(ValueError) as info:
        JumpCloudClient(base_url=BASE, api_key=bad)
    assert bad not in str(info.value)
    assert bad not in "".join(traceback.format_exception(info.value))


def test_key_never_logged(caplog):
    answers = iter([json_response(503, {"message": "busy"}), httpx.ConnectError("refused")])

    def handler(request):
        step = next(answers, None)
        if isinstance(step, Exception):
            raise step
        return step or json_response(200, {"totalCount": 0, "results": []})

    client, _ = fake_client(handler)
    with caplog.at_level("DEBUG"):
        run(collect(client.list_v1("/api/systemusers")))
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
