"""Round trips to Redis made by this process, counted: a command is one, a pipeline one however many commands.
For the checks that a read of every schedule entry does not grow with the organisations (tests, the bench)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.connection


class Trips:
    count = 0


@contextmanager
def counted() -> Iterator[Trips]:
    """Count the round trips made inside the block (``trips.count``), by every redis-py connection of the
    process."""
    trips = Trips()
    send = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        trips.count += 1
        return send(self, command, check_health)

    redis.connection.Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield trips
    finally:
        redis.connection.Connection.send_packed_command = send  # type: ignore[method-assign]
