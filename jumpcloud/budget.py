"""A connector's request budget, shared by every worker through Redis: at most ``max_in_flight`` requests open
at once and at most ``rate`` requests a second, across all parts of all syncs and provisioning requests on every
host. Celery's own ``rate_limit`` is per worker process, which is not what a JumpCloud key's limit is.

Both are single Lua scripts, so each decision is atomic, and both use Redis's clock, so hosts whose clocks
disagree still share one budget. A slot held by a process that died expires after ``lease`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

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


class RedisBudget:
    """A ``jumpcloud.limits.Limiter`` for one connector."""

    def __init__(self, redis_url: str, connector: str, *, max_in_flight: int | None = None,
                 rate: float | None = None, lease: float = 300.0, poll: float = 0.01) -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._slots_key = f"jumpsync:budget:{connector}:in-flight"
        self._bucket_key = f"jumpsync:budget:{connector}:rate"
        self.max_in_flight, self.rate, self.lease, self.poll = max_in_flight, rate, lease, poll
        self._take_slot = self._redis.register_script(_TAKE_SLOT)
        self._take_token = self._redis.register_script(_TAKE_TOKEN)

    async def _token(self) -> None:
        if not self.rate:
            return
        wait = float(await self._take_token(keys=[self._bucket_key], args=[self.rate, max(1.0, self.rate)]))
        if wait > 0:
            await asyncio.sleep(wait)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._token()
        if not self.max_in_flight:
            yield
            return
        token = uuid.uuid4().hex
        while not await self._take_slot(keys=[self._slots_key], args=[self.max_in_flight, self.lease, token]):
            await asyncio.sleep(self.poll)
        try:
            yield
        finally:
            await self._redis.zrem(self._slots_key, token)

    async def aclose(self) -> None:
        await self._redis.aclose()
