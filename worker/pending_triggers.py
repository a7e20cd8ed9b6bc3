"""At most one of each scheduled sync trigger and events refresh of a connector waits in the queue.

Beat sends a connector's trigger and refresh every interval. On a fleet with more connectors due than it can
serve in an interval (an MSP key's organisations), they can wait longer than that. Sending another would queue a
duplicate; dropping the waiting one when the next is due (Celery's ``expires``) would drop the same ones every
round, since beat sends what is due together in the same order each time, and starve them (a thousand refreshes
a minute behind a thousand triggers: none ran). So beat sends an entry's task only when none of that entry waits
(``claim``: a mark named after the entry, holding a token the task carries), and the task clears the mark when it
starts (``release``), only if it is still its own. A waiting task keeps its place in the queue.

The mark expires after ``ttl_s``, so a trigger lost without its mark (a purged queue) holds back that connector's
syncs for at most that long; a broker that lost its data lost the marks with the messages. A task that waited
longer than that finds a newer one's mark and leaves it: at most two of an entry ever wait.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "jumpsync:trigger:"
#: A mark lives this many of its schedule's periods, within ``MIN_TTL_S`` and ``MAX_TTL_S``.
TTL_PERIODS = 3
MIN_TTL_S = 600
MAX_TTL_S = 24 * 3600
#: Delete the mark only if it still holds this trigger's token.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def key(entry: str) -> str:
    """The mark of beat entry ``entry`` (``sync:<connector>``, ``events:<connector>``)."""
    return KEY_PREFIX + entry


def ttl_s(schedule) -> int:
    """How long a mark of ``schedule``'s trigger lives: ``TTL_PERIODS`` intervals (a cron: times the wait for its
    next time), at least ``MIN_TTL_S`` and at most ``MAX_TTL_S``."""
    run_every = getattr(schedule, "run_every", None)
    if run_every is not None:
        period = run_every.total_seconds()
    else:
        period = schedule.remaining_estimate(datetime.now(timezone.utc)).total_seconds()
    return min(max(int(TTL_PERIODS * period), MIN_TTL_S), MAX_TTL_S)


def claim(client: redis.Redis, entry: str, ttl: int) -> str | None:
    """Mark a task of beat entry ``entry`` as waiting: its token, or None if one already waits (send none)."""
    token = secrets.token_hex(8)
    return token if client.set(key(entry), token, nx=True, ex=ttl) else None


def unclaim(client: redis.Redis, entry: str, token: str) -> None:
    """The task marked with ``token`` was not sent after all: the next may be."""
    client.eval(_RELEASE, 1, key(entry), token)


def release(broker_url: str, entry: str, token: str) -> None:
    """The task ``token`` of beat entry ``entry`` has started: beat may send the next. Best effort: a broker that
    does not answer leaves the mark to expire."""
    client = redis.Redis.from_url(broker_url)
    try:
        unclaim(client, entry, token)
    except redis.exceptions.RedisError as exc:
        log.warning("could not clear the waiting mark of %s (%s); beat sends its next once the mark expires",
                    entry, exc)
    finally:
        client.close()
