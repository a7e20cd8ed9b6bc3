"""Retry policy (backoff, Retry-After) and the client's retry behaviour."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpcloud import (
    AuthError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from jumpcloud.retry import is_retryable_status, parse_retry_after
from tests.support.fake_jumpcloud import fake_client, json_response, run

NOW = 1_800_000_000.0


# -- the policy ----------------------------------------------------------------


@given(
    attempt=st.integers(1, 10_000),
    draw=st.floats(0, 1, exclude_max=True),
    base=st.floats(0, 10),
    cap=st.floats(0, 300),
)
def test_backoff_within_bounds(attempt, draw, base, cap):
    policy = RetryPolicy(base_delay=base, max_delay=cap, rng=lambda: draw)
    delay = policy.delay(attempt, None)
    assert 0 <= delay <= cap
    assert delay <= base * 2 ** min(attempt - 1, 64) + 1e-9


@given(
    attempt=st.integers(1, 50),
    header=st.one_of(
        st.none(),
        st.integers(0, 10**9).map(str),
        st.floats(0, 10**6).map(lambda f: f"{f:.3f}"),
        st.integers(-10**6, 10**7).map(lambda d: email.utils.formatdate(NOW + d, usegmt=True)),
        st.text(max_size=30),
    ),
    max_delay=st.floats(0, 60),
    max_retry_after=st.floats(0, 600),
)
def test_delay_always_within_cap(attempt, header, max_delay, max_retry_after):
    policy = RetryPolicy(max_delay=max_delay, max_retry_after=max_retry_after,
                         rng=lambda: 0.999999, clock=lambda: NOW)
    delay = policy.delay(attempt, header)
    assert 0 <= delay <= max(max_delay, max_retry_after)


def test_backoff_grows_exponentially_then_caps():
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, rng=lambda: 1.0)
    assert [policy.delay(a) for a in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_full_jitter_uses_rng():
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0, rng=lambda: 0.25)
    assert policy.delay(3) == pytest.approx(1.0)  # 0.25 * 4


@pytest.mark.parametrize("value,expected", [
    ("120", 120.0),
    (" 3 ", 3.0),
    ("1.5", 1.5),
    ("0", 0.0),
    (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
    (email.utils.formatdate(NOW - 42, usegmt=True), 0.0),
    ("-5", None),
    ("inf", None),
    ("nan", None),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_parse_retry_after(value, expected):
    got = parse_retry_after(value, NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_retry_after_capped_at_sane_limit():
    policy = RetryPolicy(clock=lambda: NOW)
    assert policy.delay(1, "45") == 45  # above max_delay but honoured
    assert policy.delay(1, "3600") == 120
    assert policy.delay(1, email.utils.formatdate(NOW + 86400, usegmt=True)) == 120


def test_invalid_retry_after_falls_back_to_backoff():
    policy = RetryPolicy(rng=lambda: 1.0)
    assert policy.delay(2, "whenever") == 1.0


@pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504, 599])
def test_retryable(status):
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 204, 301, 400, 401, 403, 404, 408, 409, 422])
def test_not_retryable(status):
    assert not is_retryable_status(status)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1},
                                    {"max_delay": float("inf")}, {"max_retry_after": -1}])
def test_policy_validation(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# -- the client retrying ---------------------------------------------------------


class Script:
    """A handler answering from a list of responses (or exceptions), then 200."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else json_response(200, {"ok": True})
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return json_response(step, {"message": f"status {step}"})
        return step


def _get(handler, **kwargs):
    client, sleeps = fake_client(handler, **kwargs)

    async def go():
        async with client:
            return await client.get_json("/api/systemusers")

    return run(go()), client, sleeps


def test_429_honours_retry_after_seconds():
    script = Script(json_response(429, {"message": "slow down"}, {"Retry-After": "7"}))
    body, client, sleeps = _get(script)
    assert body == {"ok": True}
    assert sleeps.calls == [7.0]
    assert len(script.requests) == 2
    assert client.stats.requests == 2 and client.stats.retries == 1 and client.stats.throttled == 1
    assert client.stats.by_status == {429: 1, 200: 1}


def test_429_honours_retry_after_http_date():
    when = email.utils.formatdate(NOW + 10, usegmt=True)
    script = Script(json_response(429, {"message": "slow down"}, {"Retry-After": when}))
    _, _, sleeps = _get(script, retry=RetryPolicy(clock=lambda: NOW))
    assert sleeps.calls == [pytest.approx(10.0)]


def test_429_without_retry_after_backs_off_with_jitter():
    script = Script(429, 429, 429)
    _, client, sleeps = _get(script, retry=RetryPolicy(rng=lambda: 0.5))
    assert sleeps.calls == [0.25, 0.5, 1.0]
    assert client.stats.throttled == 3


def test_huge_retry_after_is_capped():
    script = Script(json_response(429, {}, {"Retry-After": "86400"}))
    _, _, sleeps = _get(script)
    assert sleeps.calls == [120.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retried(status):
    script = Script(status, status)
    body, client, sleeps = _get(script)
    assert body == {"ok": True}
    assert len(script.requests) == 3 and len(sleeps.calls) == 2
    assert client.stats.by_status[status] == 2


def test_503_retry_after_honoured():
    script = Script(json_response(503, {}, {"Retry-After": "2"}))
    _, _, sleeps = _get(script)
    assert sleeps.calls == [2.0]


@pytest.mark.parametrize("exc", [
    httpx.ConnectError("connection refused"),
    httpx.ConnectTimeout("timed out"),
    httpx.ReadTimeout("timed out"),
    httpx.ReadError("reset by peer"),
    httpx.RemoteProtocolError("server disconnected"),
    httpx.PoolTimeout("pool"),
])
def test_transport_errors_retried(exc):
    script = Script(exc)
    body, client, sleeps = _get(script)
    assert body == {"ok": True}
    assert client.stats.by_status == {"transport": 1, 200: 1}
    assert client.stats.retries == 1 and len(sleeps.calls) == 1


@pytest.mark.parametrize("status,error", [(503, ServerError), (500, ServerError), (429, RateLimitedError)])
def test_gives_up_after_max_attempts(status, error):
    script = Script(*[status] * 10)
    with pytest.raises(error) as info:
        _get(script)
    assert len(script.requests) == 5
    assert info.value.status == status and info.value.attempts == 5
    assert "gave up after 5 attempts" in str(info.value)


def test_gives_up_on_transport_errors():
    script = Script(*[httpx.ConnectError("[Errno 111] Connection refused")] * 10)
    with pytest.raises(TransportError) as info:
        _get(script, retry=RetryPolicy(max_attempts=3, rng=lambda: 0.5))
    assert len(script.requests) == 3
    err = info.value
    assert err.status is None and err.attempts == 3
    assert str(err) == ("GET /api/systemusers: ConnectError: [Errno 111] Connection refused"
                        " (gave up after 3 attempts)")
    assert isinstance(err.__cause__, httpx.ConnectError)


def test_max_attempts_one_means_no_retry():
    script = Script(503)
    with pytest.raises(ServerError):
        _get(script, retry=RetryPolicy(max_attempts=1))
    assert len(script.requests) == 1


def test_deterministic_transport_errors_not_retried():
    script = Script(httpx.UnsupportedProtocol("nope"))
    with pytest.raises(TransportError):
        _get(script)
    assert len(script.requests) == 1


@pytest.mark.parametrize("status,error", [
    (400, BadRequestError), (401, AuthError), (403, AuthError), (404, NotFoundError),
    (409, ConflictError), (422, BadRequestError), (408, BadRequestError),
])
def test_no_retry_on_4xx(status, error):
    script = Script(status)
    with pytest.raises(error) as info:
        _get(script)
    assert len(script.requests) == 1
    assert info.value.status == status and info.value.attempts == 1
    assert "gave up" not in str(info.value)


def _post(handler, **kwargs):
    client, sleeps = fake_client(handler, **kwargs)

    async def go():
        async with client:
            return await client.request("POST", "/api/systemusers", json={"email": "a@b.c"})

    return run(go())


def test_post_retried_by_default():
    script = Script(503, httpx.ReadTimeout("timed out"))
    assert _post(script).status_code == 200
    assert len(script.requests) == 3


@pytest.mark.parametrize("step,retried", [
    (503, False),
    (httpx.ReadTimeout("timed out"), False),
    (httpx.RemoteProtocolError("disconnected"), False),
    (429, True),
    (httpx.ConnectError("refused"), True),
    (httpx.ConnectTimeout("timed out"), True),
])
def test_post_only_retried_when_certainly_not_applied(step, retried):
    script = Script(step)
    policy = RetryPolicy(retry_non_idempotent=False, rng=lambda: 0.5)
    if retried:
        assert _post(script, retry=policy).status_code == 200
        assert len(script.requests) == 2
    else:
        with pytest.raises((ServerError, TransportError)):
            _post(script, retry=policy)
        assert len(script.requests) == 1


def test_backoff_releases_the_slot():
    """With one slot, a request waiting out a backoff does not block another."""
    gate = asyncio.Event
    order: list[str] = []

    async def handler(request):
        name = request.url.path
        order.append(name)
        if name == "/slow" and order.count("/slow") == 1:
            return json_response(503, {"message": "busy"})
        return json_response(200, {"path": name})

    state = {}

    async def sleep(seconds):
        # The slow request is backing off: the other one must get through now.
        state["released"] = gate()
        await state["released"].wait()

    client, _ = fake_client(handler, max_in_flight=1, sleep=sleep)

    async def go():
        async with client:
            slow = asyncio.create_task(client.get_json("/slow"))
            while "released" not in state:
                await asyncio.sleep(0)
            fast = await asyncio.wait_for(client.get_json("/fast"), timeout=5)
            state["released"].set()
            return fast, await slow

    fast, slow = run(go())
    assert fast == {"path": "/fast"} and slow == {"path": "/slow"}
    assert order == ["/slow", "/fast", "/slow"]
