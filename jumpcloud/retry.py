"""When to retry a JumpCloud request and how long to wait first.

JumpCloud publishes no rate-limit figures and sends no rate-limit headers, but
it does answer 429 when pushed, and like any service it has transient 5xx and
network failures. A sync touches thousands of pages, so it must ride those out;
but retrying a 400/401/403/404/409 can never help, so those fail at once.

Backoff is exponential with *full jitter* (a uniform draw in [0, cap]): with
many pages in flight, jitter spreads the retries so they do not hit the server
again in lock step. A ``Retry-After`` header (seconds or an HTTP date), when a
server sends one, wins over the computed backoff.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["RetryPolicy", "is_retryable_status", "is_retryable_transport", "parse_retry_after"]

# HTTP methods that may change state on the server. A retry after a timeout
# could repeat the change; see RetryPolicy.retry_non_idempotent.
NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})

# Transport failures worth retrying (the network or the server hiccuped) vs.
# deterministic ones (a bad URL scheme, a malformed request) that will fail the
# same way every time.
_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
# Failures where the request certainly never reached the server: safe to retry
# even for POST when RetryPolicy.retry_non_idempotent is False.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def is_retryable_status(status: int) -> bool:
    """429 and every 5xx are worth retrying; every other status is not."""
    return status == 429 or 500 <= status <= 599


def may_have_arrived(failure: httpx.RequestError) -> bool:
    """Whether a request that got no answer may still have reached the server (and been applied)."""
    return not isinstance(failure, _NOT_SENT)


def is_retryable_transport(failure: httpx.RequestError, may_repeat: bool) -> bool:
    """Whether a request that got no response should be tried again: a transient failure, and either a
    request that may be repeated or one that certainly never reached the server."""
    return isinstance(failure, _RETRYABLE_TRANSPORT) and (may_repeat or isinstance(failure, _NOT_SENT))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Accepts delay-seconds ("120", also "1.5") or an HTTP date. ``now`` is the
    current Unix time, used for dates. A date in the past gives 0. Anything
    unparsable gives None (the caller then falls back to its own backoff)
    rather than an error: a malformed header must not abort a sync.
    """
    if value is None:
        return None
    match = _SECONDS.match(value)
    if match:
        return float(match.group(1))
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT.
        when = when.replace(tzinfo=timezone.utc)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a request gets and how long to sleep between them.

    ``max_attempts`` counts every HTTP attempt (5 = one try and four retries).
    ``base_delay`` and ``max_delay`` bound the jittered exponential backoff;
    ``max_retry_after`` bounds a server's ``Retry-After`` (which may exceed
    ``max_delay``: the server knows best, but a worker must not hang for an
    hour on one header). ``retry_non_idempotent=False`` makes POST/PATCH retry
    only when the request certainly never reached the server (429, connection
    failures); the default retries them like any other request, because the
    JumpCloud writes we make are safe to repeat (a duplicate create or member
    add answers 409/400, which callers resolve by looking the object up).
    ``rng`` (returns a float in [0, 1)) and ``clock`` (Unix time) are injectable
    for tests.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    retry_non_idempotent: bool = True
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")

    def is_retryable(self, status: int) -> bool:
        """Whether a response with this status should be tried again."""
        return is_retryable_status(status)

    def may_repeat(self, method: str, reads_only: bool = False) -> bool:
        """Whether a request may be sent again after a failure that it may have reached the server with: any
        but POST/PATCH, those too unless ``retry_non_idempotent`` is off, and a POST that only reads."""
        return reads_only or self.retry_non_idempotent or method not in NON_IDEMPOTENT_METHODS

    def backoff_cap(self, attempt: int) -> float:
        """Upper bound of the jittered wait after failed attempt ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)  # 2**64 * anything >= any sane max_delay
        return min(self.max_delay, self.base_delay * (2.0**exponent))

    def delay(self, attempt: int, retry_after_header: str | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based).

        With a valid ``Retry-After`` header: that many seconds, capped at
        ``max_retry_after``. Otherwise: uniform in [0, min(max_delay,
        base_delay * 2**(attempt-1))]. Always within [0, max(max_delay,
        max_retry_after)].
        """
        retry_after = parse_retry_after(retry_after_header, self.clock())
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        draw = min(max(float(self.rng()), 0.0), 1.0)
        return draw * self.backoff_cap(attempt)
