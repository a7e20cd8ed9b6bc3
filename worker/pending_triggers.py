"""At most one scheduled sync trigger of a connector waits in the queue.

Beat sends a connector's trigger every interval. On a fleet with more connectors due than it can sync in an
interval (an MSP key's organisations), a trigger can wait longer than that. Sending another would queue a
duplicate; dropping the waiting one when the next is due (Celery's ``expires``) would drop the same connectors
every round, since beat sends the triggers due together in the same order each time, and starve them. So beat
sends a trigger only when none of the connector waits (``claim``: a mark holding the trigger's token, which the
trigger carries), and the trigger's task clears the mark when it starts (``release``), only if it is still its
own. A waiting trigger keeps its place in the queue.

The mark expires after ``ttl_s``, so a trigger lost without its mark (a purged queue) holds back that connector's
syncs for at most that long; a broker that lost its data lost the marks with the messages. A trigger that waited
longer than that finds a newer trigger's mark and leaves it: at most two of a connector ever wait.
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


def key(connector: str) -> str:
    return KEY_PREFIX + connector


def ttl_s(schedule) -> int:
    """How long a mark of ``schedule``'s trigger lives: ``TTL_PERIODS`` intervals (a cron: times the wait for its
    next time), at least ``MIN_TTL_S`` and at most ``MAX_TTL_S``."""
    run_every = getattr(schedule, "run_every", None)
    if run_every is not None:
        period = run_every.total_seconds()
    else:
        period = schedule.remaining_estimate(datetime.now(timezone.utc)).total_seconds()
    return min(max(int(TTL_PERIODS * period), MIN_TTL_S), MAX_TTL_S)


def claim(client: redis.Redis, connector: str, ttl: int) -> str | None:
    """Mark a trigger of ``connector`` as waiting: its token, or None if one already waits (send none)."""
    token = secrets.token_hex(8)
    return token if client.set(key(connector), token, nx=True, ex=ttl) else None


def unclaim(client: redis.Redis, connector: str, token: str) -> None:
    """The trigger marked with ``token`` was not sent after all: the next may be."""
    client.eval(_RELEASE, 1, key(connector), token)


def release(broker_url: str, connector: str, token: str) -> None:
    """The connector's scheduled trigger ``token`` has started: beat may send the next. Best effort: a broker that
    does not answer leaves the mark to expire."""
    client = redis.Redis.from_url(broker_url)
    try:
        unclaim(client, connector, token)
    except redis.exceptions.RedisError as exc:
        log.warning("could not clear the waiting-trigger mark of %s (%s); beat sends its next trigger once the "
                    "mark expires", connector, exc)
    finally:
        client.close()
