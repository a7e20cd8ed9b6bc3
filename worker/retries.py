"""One retry policy for database errors in task bodies.

A task that meets the database down (refused, reset, locked past its busy timeout: SQLAlchemy's
``OperationalError``) is sent again with backoff under the same task id, instead of failing and leaving what it
held for a lease or a reaper to find. Sending it again is safe because every task is idempotent by its claims:

| task | a retry |
|---|---|
| ``jumpsync.provision`` | its claim lets the same task id take its own running request again; the action is idempotent |
| ``jumpsync.sync.part`` | the next attempt takes the part over; once ended, it finalizes a run still finalizing |
| ``jumpsync.sync.finalize`` | the fan-in and the derived parts are conditional updates |

So an outcome that could not be written is written within ``BACKOFF_MAX`` of the database's return, not after
the request's lease (15 minutes) or the part's. Past ``MAX_RETRIES`` the task fails as before, and the lease and
the reaper remain.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

#: The errors that mean "the database, not this task": a disconnect, a refused connection, a lock not granted.
DATABASE_ERRORS = (OperationalError,)
#: Seconds: 2, 4, 8, 16, 30, 30, ... (with jitter); about 20 minutes of retries in all.
BACKOFF_MAX = 30
MAX_RETRIES = 40

#: ``@shared_task(..., **ON_DATABASE_ERRORS)``: Celery's own autoretry, with the policy above.
ON_DATABASE_ERRORS: dict[str, Any] = {
    "autoretry_for": DATABASE_ERRORS, "retry_backoff": 2, "retry_backoff_max": BACKOFF_MAX, "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}
