"""Beat's periodic work, timed in a process of its own against a fleet's Redis, database and config once that
fleet's beat has stopped (``python -m bench.beat_probe`` with the fleet's environment; prints JSON).

Beat's tick sends what is due: RedBeat reads the due entries (one round trip) and each due one, so it grows with
the work sent, not with the entries. What grows with the entries is the reconcile, every
``config_reload_interval`` and after each discovery that changed something: the config and the discovered
connectors read, and every entry compared with the one in Redis. This times it and counts its round trips to Redis
(a pipeline is one).
"""

from __future__ import annotations

import json
import time

import redis

from tests.support.redis_trips import counted

RUNS = 3


def main() -> None:
    from worker.beat import ConnectorScheduler, redbeat_on_broker
    from worker.celery_app import app

    redbeat_on_broker(app)
    scheduler = ConnectorScheduler(app=app, lazy=True)
    entries = len(redis.Redis.from_url(app.conf.broker_url).smembers(scheduler._known_key))
    seconds, round_trips = [], []
    for _ in range(RUNS):
        with counted() as trips:
            started = time.perf_counter()
            scheduler.reconcile()
            seconds.append(time.perf_counter() - started)
        round_trips.append(trips.count)
    print(json.dumps({"entries": entries, "reconcile_s": round(min(seconds), 3),
                      "reconcile_round_trips": min(round_trips)}))


if __name__ == "__main__":
    main()
