"""A connector's request budget, shared by every worker through Redis: at most ``max_in_flight`` requests open
at once and at most ``rate`` requests a second, across all parts of all syncs and provisioning requests on every
host. Celery's own ``rate_limit`` is per worker process, which is not what a JumpCloud key's limit is.

Both are single Lua scripts, so each decision is atomic, and both use Redis's clock, so hosts whose clocks
disagree still share one budget. A slot held by a process that died expires after ``lease`` seconds.

Redis restarting (a deploy, a failover) must not fail the requests waiting for the budget: a call that finds it
gone is tried again, with backoff, for ``outage_grace`` seconds; only then does the request fail, with
``BudgetUnavailableError``. A slot is given back the same way; one that cannot be expires with its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a request waits for the budget's Redis to answer again before it fails (seconds).
OUTAGE_GRACE = 60.0
#: The longest pause between two tries while Redis does not answer.
MAX_PAUSE = 2.0

# KEYS[1]: sorted set of holders (score = lease expiry). ARGV: limit, lease seconds, token. Returns 1 if taken.
_TAKE_SLOT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""

# KEYS[1]: hash {tokens, at}. ARGV: rate per second, burst. Takes a token, borrowing it from the future when none
# is left (tokens go below zero), and returns the seconds until that token is due (0: go now). One call per request:
# callers wait their own turn, in the order they asked, instead of all retrying at once when a token comes back.
_TAKE_TOKEN = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + (t - at) * rate) - 1
local wait = 0
if tokens < 0 then wait = -tokens / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], 3600 + math.ceil(wait))
return tostring(wait)
"""


class BudgetUnavailableError(Exception):
    """The connector's request budget (its Redis) did not answer for ``outage_grace``: the request was not sent
    (not a ``JumpCloudError``: JumpCloud was never asked)."""

    def __init__(self, connector: str, waited: float, cause: BaseException) -> None:
        super().__init__(f"the request budget of connector {connector!r} (Redis) did not answer for {waited:.0f}s: "
                         f"{type(cause).__name__}; the request was not sent")


class RedisBudget:
    """A ``jumpcloud.limits.Limiter`` for one connector."""

    def __init__(self, redis_url: str, connector: str, *, max_in_flight: int | None = None,
                 rate: float | None = None, lease: float = 300.0, poll: float = 0.01,
                 outage_grace: float = OUTAGE_GRACE) -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self.connector = connector
        self._slots_key = f"jumpsync:budget:{connector}:in-flight"
        self._bucket_key = f"jumpsync:budget:{connector}:rate"
        self.max_in_flight, self.rate, self.lease, self.poll = max_in_flight, rate, lease, poll
        self.outage_grace = outage_grace
        self._take_slot = self._redis.register_script(_TAKE_SLOT)
        self._take_token = self._redis.register_script(_TAKE_TOKEN)

    async def _answered(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again while Redis does not answer, for ``outage_grace`` seconds."""
        waited, pause = 0.0, 0.1
        while True:
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError) as exc:  # BusyLoadingError (AOF loading) included
                if waited >= self.outage_grace:
                    raise BudgetUnavailableError(self.connector, waited, exc) from None
                if not waited:
                    log.warning("the request budget's Redis does not answer; waiting up to %.0fs for it",
                                self.outage_grace, extra={"connector": self.connector})
                await asyncio.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, MAX_PAUSE)

    async def _token(self) -> None:
        if not self.rate:
            return
        rate = self.rate
        wait = float(await self._answered(lambda: self._take_token(keys=[self._bucket_key],
                                                                   args=[rate, max(1.0, rate)])))
        if wait > 0:
            await asyncio.sleep(wait)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._token()
        if not self.max_in_flight:
            yield
            return
        token = uuid.uuid4().hex
        limit = self.max_in_flight
        while not await self._answered(lambda: self._take_slot(keys=[self._slots_key],
                                                                args=[limit, self.lease, token])):
            await asyncio.sleep(self.poll)
        try:
            yield
        finally:
            await self._give_back(token)

    async def _give_back(self, token: str) -> None:
        """Free the slot, waiting for Redis as a take does (a slot kept by its AOF would block the others for its
        whole lease); if it stays away, the lease frees it. Never fails the request it ends."""
        try:
            await self._answered(lambda: self._redis.zrem(self._slots_key, token))
        except BudgetUnavailableError:
            log.warning("a request budget slot could not be given back (Redis does not answer); it expires with "
                        "its lease", extra={"connector": self.connector})

    async def aclose(self) -> None:
        await self._redis.aclose()
