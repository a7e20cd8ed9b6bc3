"""The provisioning load of a chaos scenario: an application that submits access changes through jumpsync's
public Python entry point (``jumpsync.api.submit_request``), in a process of its own, as a ticketing system's
integration would.

    python -m tests.chaos.client PLAN.json OUT.jsonl

PLAN: ``{"connector", "deadline", "requests": [{"key", "action", "params", "after"}]}``; each request is
submitted ``after`` seconds from the start. A submission that raises (the database down: jumpsync records
nothing, the caller hears it) is tried again every half second with the same idempotency key, as a careful
client does, until ``deadline`` seconds from the start. Each request accepted is a line of OUT
(``{"key", "id", "tries"}``), written as it is accepted; one given up is a line with ``"id": null``.

The environment is a worker's (``JUMPSYNC_CONFIG``, ``JUMPSYNC_DATABASE_URL``, ``JUMPSYNC_BROKER_URL``).
"""

from __future__ import annotations

import json
import sys
import time


def main(plan_path: str, out_path: str) -> int:
    from jumpsync.api import submit_request

    plan = json.loads(open(plan_path).read())
    start = time.monotonic()
    deadline = start + plan["deadline"]
    with open(out_path, "a") as out:
        for request in sorted(plan["requests"], key=lambda r: r["after"]):
            time.sleep(max(0.0, start + request["after"] - time.monotonic()))
            tries, accepted = 0, None
            while accepted is None and time.monotonic() < deadline:
                tries += 1
                try:
                    accepted = submit_request(plan["connector"], request["action"], request["params"],
                                              idempotency_key=request["key"])
                except Exception as exc:  # noqa: BLE001  (the database or the broker down: any error, try again)
                    print(f"{request['key']}: try {tries}: {type(exc).__name__}: {exc}".splitlines()[0],
                          file=sys.stderr, flush=True)
                    time.sleep(0.5)
            out.write(json.dumps({"key": request["key"], "id": accepted and accepted["id"], "tries": tries}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
