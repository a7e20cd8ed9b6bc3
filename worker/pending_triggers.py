"""At most one scheduled sync trigger of a connector waits in the queue.

Beat sends a connector's trigger every interval. On a fleet with more connectors due than it can sync in an
interval (an MSP key's organisations), a trigger can wait longer than that. Sending another would queue a
duplicate; dropping the waiting one when the next is due (Celery's ``expires``) would drop the same connectors
every round, since beat sends the triggers due together in the same order each time, and starve them. So beat
sends a trigger only when none of the connector waits (``claim``), and the trigger's task says it has started
(``release``): a waiting trigger keeps its place in the queue, and the connector's next interval counts from when
beat would have sent it.

The mark expires after ``ttl_s`` of its schedule, so a trigger lost without its mark (a purged queue) holds back
that connector's syncs for at most that long; a broker that lost its data lost the marks with the messages.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "jumpsync:trigger:"
#: A mark lives this many of its schedule's periods, and at least ``MIN_TTL_S``.
TTL_PERIODS = 3
MIN_TTL_S = 600


def key(connector: str) -> str:
    return KEY_PREFIX + connector


def ttl_s(schedule) -> int:
    """How long a mark of ``schedule``'s trigger lives: ``TTL_PERIODS`` intervals (a cron: times the wait for its
    next time), at least ``MIN_TTL_S``."""
    run_every = getattr(schedule, "run_every", None)
    if run_every is not None:
        period = run_every.total_seconds()
    else:
        period = schedule.remaining_estimate(datetime.now(timezone.utc)).total_seconds()
    return max(int(TTL_PERIODS * period), MIN_TTL_S)


def claim(client: redis.Redis, connector: str, ttl: int) -> bool:
    """Mark a trigger of ``connector`` as waiting; False if one already waits (send none)."""
    return bool(client.set(key(connector), datetime.now(timezone.utc).isoformat(), nx=True, ex=ttl))


def release(broker_url: str, connector: str) -> None:
    """The connector's scheduled trigger has started: beat may send the next. Best effort: a broker that does not
    answer leaves the mark to expire."""
    client = redis.Redis.from_url(broker_url)
    try:
        client.delete(key(connector))
    except redis.exceptions.RedisError as exc:
        log.warning("could not clear the waiting-trigger mark of %s (%s); beat sends its next trigger once the "
                    "mark expires", connector, exc)
    finally:
        client.close()
