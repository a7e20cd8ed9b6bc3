"""The HTTP API under load, in a process of its own pointed at a running ``jumpsync api`` and the bench fleet's
database (issue 24's targets):

    JUMPSYNC_DATABASE_URL=... JUMPSYNC_BENCH_SUBMIT_TOKEN=... JUMPSYNC_BENCH_APPROVE_TOKEN=... \\
        python -m bench.api_load --url http://127.0.0.1:PORT --pairs pairs.json --out result.json

Tokens come by environment, never in the process's arguments (``ps`` shows those). Requests are
``group.add-member`` of (group id, user id) pairs that are not members, posted to ``POST /v1/requests`` as a
ticketing system would, each with its own idempotency key.

- sequential: one request at a time; latency = the request's ``finished_at`` (the worker's) minus the moment the
  POST was sent; the HTTP answer's own time is reported apart. The outcome is polled on the database (one count
  every 2 ms), not over HTTP, so that the poll does not load the API being measured.
- burst: ``--burst`` requests from ``--clients`` concurrent keep-alive connections (plain HTTP/1.1 on asyncio
  streams: the load costs the cores it shares little); throughput = requests ÷ (first POST →
  last ``finished_at``); the submit rate is shown to tell whether the submitters were the limit.
- approval: requests into the one group the connector's approval rule names (as an admin group would be), each
  approved by a second token as soon as it is recorded; the path's overhead = its POST → applied minus the
  direct path's.
- token check: ``auth.tokens.authenticate`` in this process (the lookup by id, the hash compare, the scopes),
  and over HTTP ``GET /v1/requests/{id}`` (a token checked, one row read) against ``/healthz`` (no token, no
  database), both one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from models.states import ENDED_REQUEST_STATUSES, RequestStatus
from models.tables import ProvisioningRequest
from worker import runtime

SUBMIT_TOKEN_ENV = "JUMPSYNC_BENCH_SUBMIT_TOKEN"
APPROVE_TOKEN_ENV = "JUMPSYNC_BENCH_APPROVE_TOKEN"
ACTION = "group.add-member"
POLL_S = 0.002


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(values: list[float]) -> dict[str, float]:
    """p50 and p95 of seconds, in milliseconds."""
    if not values:
        return {}
    return {"p50": round(pct(values, 50) * 1000, 2), "p95": round(pct(values, 95) * 1000, 2)}


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def unfinished(ids: list[str]) -> int:
    """How many of the requests have not ended: one count a poll, so that waiting takes little CPU."""
    table = ProvisioningRequest.__table__
    with runtime.engine().connect() as connection:
        return sum(connection.execute(select(func.count()).where(
            table.c.id.in_(ids[start:start + 500]), table.c.status.not_in(ENDED_REQUEST_STATUSES))).scalar_one()
            for start in range(0, len(ids), 500))


def finished(ids: list[str]) -> dict[str, tuple[str, float | None]]:
    """Each request's (status, finished_at as epoch seconds)."""
    table = ProvisioningRequest.__table__
    out: dict[str, tuple[str, float | None]] = {}
    with runtime.engine().connect() as connection:
        for start in range(0, len(ids), 500):
            for row in connection.execute(select(table.c.id, table.c.status, table.c.finished_at).where(
                    table.c.id.in_(ids[start:start + 500]))):
                out[row.id] = (row.status, _ts(row.finished_at))
    return out


def wait_ended(ids: list[str], timeout: float, poll_s: float = POLL_S) -> None:
    deadline = time.monotonic() + timeout
    while unfinished(ids) and time.monotonic() < deadline:
        time.sleep(poll_s)


def applied_at(request_id: str, timeout: float) -> float | None:
    """When the worker finished the request (epoch seconds), or None if it did not succeed within ``timeout``."""
    wait_ended([request_id], timeout)
    status, ended = finished([request_id])[request_id]
    return ended if status == RequestStatus.SUCCEEDED else None


def body(connector: str, pair: list[str]) -> dict:
    group, user = pair
    return {"connector": connector, "action": ACTION, "params": {"group": group, "user": user},
            "idempotency_key": f"bench-{uuid.uuid4().hex}", "on_behalf_of": "bench"}


def post(client: httpx.Client, connector: str, pair: list[str], expect: str) -> str:
    answer = client.post("/v1/requests", json=body(connector, pair))
    if answer.status_code != 202 or answer.json()["status"] != expect:
        raise RuntimeError(f"POST /v1/requests answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()["id"]


def sequential(client: httpx.Client, connector: str, pairs: list[list[str]], timeout: float) -> dict:
    total, http, failed = [], [], 0
    for pair in pairs:
        sent = time.time()
        request_id = post(client, connector, pair, RequestStatus.PENDING)
        http.append(time.time() - sent)
        ended = applied_at(request_id, timeout)
        if ended is None:
            failed += 1
            continue
        total.append(ended - sent)
    return {"requests": len(pairs), "failed": failed, "latency_ms": ms(total), "http_ms": ms(http)}


async def _post_all(url: str, token: str, connector: str, pairs: list[list[str]], clients: int) -> list[str]:
    """POST every pair from ``clients`` keep-alive connections. Plain HTTP/1.1 on asyncio streams, not httpx:
    the load shares the 2 cores with what it measures, and a client library's own CPU (several ms a request)
    would be counted against the API, as a benchmark's load generator (wrk, oha) avoids."""
    target = httpx.URL(url)
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for pair in pairs:
        queue.put_nowait(pair)
    ids: list[str] = []
    head = (f"POST /v1/requests HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n").encode()

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            while not queue.empty():
                payload = json.dumps(body(connector, queue.get_nowait())).encode()
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
                status, answer = await _response(reader)
                if status != 202:
                    raise RuntimeError(f"POST /v1/requests answered {status}: {answer[:300]!r}")
                ids.append(json.loads(answer)["id"])
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return ids


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length (what ``jumpsync api`` answers): its status and body."""
    header = await reader.readuntil(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def burst(url: str, token: str, connector: str, pairs: list[list[str]], clients: int, timeout: float) -> dict:
    first = time.time()
    ids = asyncio.run(_post_all(url, token, connector, pairs, clients))
    submitted = time.time()
    wait_ended(ids, timeout, poll_s=0.05)
    rows = finished(ids)
    ended = [at for status, at in rows.values() if status in ENDED_REQUEST_STATUSES and at is not None]
    span = (max(ended) - first) if ended else None
    statuses: dict[str, int] = {}
    for status, _at in rows.values():
        statuses[status] = statuses.get(status, 0) + 1
    return {"requests": len(ids), "clients": clients, "ended": len(ended),
            "succeeded": statuses.get(RequestStatus.SUCCEEDED, 0), "statuses": statuses,
            "seconds": round(span, 3) if span else None,
            "throughput_per_s": round(len(ended) / span, 1) if span else None,
            "submit_seconds": round(submitted - first, 3),
            "submit_rate_per_s": round(len(ids) / (submitted - first), 1),
            "timed_out": len(ended) < len(ids)}


def approval(submitter: httpx.Client, approver: httpx.Client, connector: str, pairs: list[list[str]],
             timeout: float) -> dict:
    """POST (recorded awaiting approval) → approve by a second token (released, sent) → applied."""
    total, submit_http, approve_http, after_approve, failed = [], [], [], [], 0
    for pair in pairs:
        sent = time.time()
        request_id = post(submitter, connector, pair, RequestStatus.AWAITING_APPROVAL)
        submitted = time.time()
        answer = approver.post(f"/v1/requests/{request_id}/approve", json={"comment": "bench"})
        approved = time.time()
        if answer.status_code != 200:
            raise RuntimeError(f"approve answered {answer.status_code}: {answer.text[:300]}")
        ended = applied_at(request_id, timeout)
        if ended is None:
            failed += 1
            continue
        submit_http.append(submitted - sent)
        approve_http.append(approved - submitted)
        after_approve.append(ended - approved)
        total.append(ended - sent)
    return {"requests": len(pairs), "failed": failed, "post_ms": ms(submit_http), "approve_ms": ms(approve_http),
            "approved_to_applied_ms": ms(after_approve), "machine_latency_ms": ms(total)}


def token_check(client: httpx.Client, token: str, request_id: str, rounds: int) -> dict:
    """The cost of a token check, in this process and as an HTTP round trip adds it."""
    from auth.tokens import authenticate

    engine = runtime.engine()
    authenticate(engine, token)
    spent = []
    for _ in range(rounds):
        start = time.perf_counter()
        authenticate(engine, token)
        spent.append(time.perf_counter() - start)
    health, read = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        client.get("/healthz", headers={"Authorization": ""})
        health.append(time.perf_counter() - start)
        start = time.perf_counter()
        answer = client.get(f"/v1/requests/{request_id}")
        read.append(time.perf_counter() - start)
        if answer.status_code != 200:
            raise RuntimeError(f"GET /v1/requests/ID answered {answer.status_code}: {answer.text[:300]}")
    return {"rounds": rounds, "authenticate_ms": ms(spent), "healthz_ms": ms(health),
            "authenticated_read_ms": ms(read)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load")
    parser.add_argument("--url", required=True, help="the API's base URL")
    parser.add_argument("--connector", default="bench", help="the connector without approval rules")
    parser.add_argument("--pairs", required=True,
                        help='JSON {"direct": [[group id, user id], ...], "approval": [...]}: not members; the '
                             "approval pairs' group is the one the approval rule names, the direct pairs' are not")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections of the burst")
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--approvals", type=int, default=50)
    parser.add_argument("--token-rounds", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    submit_token, approve_token = os.environ[SUBMIT_TOKEN_ENV], os.environ[APPROVE_TOKEN_ENV]
    both = json.loads(Path(args.pairs).read_text())
    pairs, approval_pairs = both["direct"], both["approval"]
    warm = 5
    need = warm + args.sequential + args.burst
    if len(pairs) < need or len(approval_pairs) < args.approvals:
        raise SystemExit(f"need {need} direct and {args.approvals} approval pairs, got {len(pairs)} and "
                         f"{len(approval_pairs)}")
    runtime.engine()
    submitter = httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {submit_token}"}, timeout=60.0)
    approver = httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {approve_token}"}, timeout=60.0)
    with submitter, approver:
        # Warm-up: the first requests pay for imports and connections in the API and in the workers.
        sequential(submitter, args.connector, pairs[:warm], args.timeout)
        at = warm
        result = {"sequential": sequential(submitter, args.connector, pairs[at:at + args.sequential], args.timeout)}
        at += args.sequential
        result["burst"] = burst(args.url, submit_token, args.connector, pairs[at:at + args.burst], args.clients,
                                args.timeout)
        result["approval"] = approval(submitter, approver, args.connector, approval_pairs[:args.approvals],
                                      args.timeout)
        last = post(submitter, args.connector, pairs[warm - 1], RequestStatus.PENDING)  # already a member: a no-op
        result["token_check"] = token_check(submitter, submit_token, last, args.token_rounds)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
