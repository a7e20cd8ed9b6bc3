"""Provisioning throughput and latency, in a process of its own pointed at the bench fleet's config:

    JUMPSYNC_CONFIG=... JUMPSYNC_BROKER_URL=... JUMPSYNC_DATABASE_URL=... \\
        python -m bench.provision_load --pairs pairs.json --burst 500 --sequential 50 --out result.json

Requests are ``group.add-member`` of (group id, user id) pairs that are not members, submitted through the
Python entry point ``jumpsync.api.submit_request`` (record, then enqueue), as an integrating service would.
- burst: submit ``--burst`` requests back to back, then wait; throughput = requests / (first submit -> last
  ``finished_at``). The submit rate is reported too: if it is the lower, the submitter was the limit.
- sequential: ``--sequential`` requests one at a time, each waited for (polling every 2 ms); latency = the
  request's ``finished_at`` minus the moment ``submit_request`` was called, split into accept (recorded),
  queue (recorded -> claimed by a worker) and apply (claimed -> finished: the API call and the write-through).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from jumpsync.api import submit_request
from models.states import ENDED_REQUEST_STATUSES, RequestStatus
from models.tables import ProvisioningRequest
from worker import runtime

CONNECTOR = "bench"


def _ts(value: datetime | None) -> float | None:
    """A database timestamp (aware: ``models.columns.UTCDateTime``) as epoch seconds."""
    return None if value is None else value.timestamp()


def _rows(ids: list[str]) -> list[ProvisioningRequest]:
    with Session(runtime.engine()) as session:
        out = []
        for start in range(0, len(ids), 500):
            out.extend(session.execute(select(ProvisioningRequest).where(
                ProvisioningRequest.id.in_(ids[start:start + 500]))).scalars())
        return out


def _unfinished(ids: list[str]) -> int:
    """How many of the requests have not ended: one count per poll, so that waiting takes little of the CPU
    that the workers being measured need (reading the 500 rows as objects every 50 ms took a tenth of a core)."""
    table = ProvisioningRequest.__table__
    with runtime.engine().connect() as connection:
        return sum(connection.execute(select(func.count()).where(
            table.c.id.in_(ids[start:start + 500]), table.c.status.not_in(ENDED_REQUEST_STATUSES))).scalar_one()
            for start in range(0, len(ids), 500))


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _submit(pair: list[str]) -> str:
    group, user = pair
    request = submit_request(CONNECTOR, "group.add-member", {"group": group, "user": user},
                             idempotency_key=f"bench-{uuid.uuid4().hex}", on_behalf_of="bench")
    if request["status"] == RequestStatus.REJECTED:
        raise RuntimeError(f"request rejected: {request.get('last_error')}")
    return request["id"]


def burst(pairs: list[list[str]], timeout: float) -> dict:
    """Submit every pair back to back, then wait; throughput, and each request's latency from the moment its
    submission began to its ``finished_at``."""
    first = time.time()
    sent_at: dict[str, float] = {}
    for pair in pairs:
        began = time.time()
        sent_at[_submit(pair)] = began
    ids = list(sent_at)
    submitted = time.time()
    deadline = time.monotonic() + timeout
    while _unfinished(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = _rows(ids)
    ended = [r for r in rows if r.status in ENDED_REQUEST_STATUSES]
    last = max((_ts(r.finished_at) for r in ended), default=None)
    span = (last - first) if last else None
    waited = [_ts(r.finished_at) - sent_at[r.id] for r in ended if r.finished_at is not None]
    return {
        "order": _order(ended),
        "latency_ms": {"p50": round(_pct(waited, 50) * 1000, 1), "p95": round(_pct(waited, 95) * 1000, 1),
                       "max": round(max(waited) * 1000, 1)} if waited else {},
        "requests": len(ids), "ended": len(ended), "succeeded": sum(r.status == RequestStatus.SUCCEEDED for r in ended),
        "statuses": {s: sum(r.status == s for r in rows) for s in {r.status for r in rows}},
        "seconds": round(span, 3) if span else None,
        "throughput_per_s": round(len(ended) / span, 1) if span else None,
        "submit_seconds": round(submitted - first, 3),
        "submit_rate_per_s": round(len(ids) / (submitted - first), 1),
        "timed_out": len(ended) < len(ids),
    }


def _order(rows: list[ProvisioningRequest]) -> dict:
    """Order per account (provisioning.ordering): of the requests on one target, how many pairs ran at the same
    time (started before the other ended) or out of the order they were recorded; both must be 0."""
    lines: dict[str, list[ProvisioningRequest]] = {}
    for row in rows:
        if row.target_key and row.started_at and row.finished_at:
            lines.setdefault(row.target_key, []).append(row)
    shared = [line for line in lines.values() if len(line) > 1]
    overlaps = out_of_order = 0
    for line in shared:
        line.sort(key=lambda r: (r.created_at, r.id))
        for before, after in zip(line, line[1:], strict=False):
            overlaps += after.started_at < before.finished_at
            out_of_order += after.started_at < before.started_at
    return {"targets_with_several": len(shared), "requests_on_them": sum(map(len, shared)),
            "overlaps": overlaps, "out_of_order": out_of_order}


def sequential(pairs: list[list[str]], timeout: float) -> dict:
    total, accept, queue, apply, failed = [], [], [], [], 0
    for pair in pairs:
        called = time.time()
        request_id = _submit(pair)
        deadline = time.monotonic() + timeout
        while _unfinished([request_id]) and time.monotonic() < deadline:
            time.sleep(0.002)
        row = _rows([request_id])[0]
        if row.status != RequestStatus.SUCCEEDED:
            failed += 1
            continue
        created, started, finished = _ts(row.created_at), _ts(row.started_at), _ts(row.finished_at)
        total.append(finished - called)
        accept.append(created - called)
        queue.append(started - created)
        apply.append(finished - started)

    def ms(values: list[float]) -> dict:
        return {"p50": round(_pct(values, 50) * 1000, 1), "p95": round(_pct(values, 95) * 1000, 1)} if values else {}

    return {"requests": len(pairs), "failed": failed, "latency_ms": ms(total), "accept_ms": ms(accept),
            "queue_ms": ms(queue), "apply_ms": ms(apply)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.provision_load")
    parser.add_argument("--pairs", required=True, help="JSON list of [group id, user id], not members")
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    pairs = json.loads(Path(args.pairs).read_text())
    if len(pairs) < args.burst + args.sequential + 2:
        raise SystemExit(f"need {args.burst + args.sequential + 2} pairs, got {len(pairs)}")
    runtime.engine()  # connect and check the schema before the clock starts
    # Warm-up: the first request pays for imports and connections in this process and in the workers.
    sequential(pairs[:2], args.timeout)
    result = {"burst": burst(pairs[2:2 + args.burst], args.timeout),
              "sequential": sequential(pairs[2 + args.burst:2 + args.burst + args.sequential], args.timeout)}
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
