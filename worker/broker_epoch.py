"""Whether the broker lost its data since the reaper last looked: a Redis restarted without persistence, or
flushed, takes every queued message with it, and nothing in the database says so.

The reaper keeps one key in the broker's Redis, set once and never expiring. Finding it gone means everything
queued before is gone too: the reaper then sends again every part and finalizer the active runs still wait for
(``pipeline.reaper.waiting_on_broker``), instead of waiting for each run to fall quiet. The first reaper run on a
new Redis finds no key either and sends them too: the second delivery of a message that was in fact queued takes
its part over (claims are conditional), wasted work once, no harm.
"""

from __future__ import annotations

import secrets

from redis import Redis

EPOCH_KEY = "jumpsync:broker-epoch"


def data_lost(client: Redis) -> bool:
    """True when the key was missing (and set it again): the broker's data, queued messages included, is gone."""
    return bool(client.set(EPOCH_KEY, secrets.token_hex(8), nx=True))
