"""The incremental refresh phase of a bench profile: writes made through the simulator's real write API at random
moments while beat sends ``jumpsync.sync.events`` every ``events_interval``, each timed from its HTTP response to
the moment its row reads back from the database; and what every refresh of the phase cost in requests.

``run.py`` starts beat, sends a full sync and waits for it; this module plans the writes (``plan_writes``),
makes and watches them (``measure``) and measures one quiet minute (``quiet_minute``). Every wait is bounded.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime

import httpx
from sqlalchemy import func, select

from connector.roles import role_id
from models.states import Trigger
from models.tables import Connector, EventCursor, Grant, Resource, SyncPart, SyncRun

#: The writes, in the proportions they are made (cycled, then shuffled): one of each kind the refresh reads back
#: differently (a user, a user's memberships, a user's or a group's app bindings, the admins' listing).
KINDS = ("user.suspend", "user.create", "user.delete", "group.add-member", "group.remove-member", "app.bind-group",
         "app.unbind-group", "app.bind-user", "app.unbind-user", "role.set")
#: How often the database and ``event_cursors`` are read: the resolution of the latencies.
POLL_S = 0.25
#: Targets of the incremental refresh (1-minute interval): a change is in the database within a minute (p50) and
#: within a minute and a half (p95); a quiet minute costs one request.
LATENCY_P50_TARGET_S = 60
LATENCY_P95_TARGET_S = 90
QUIET_REQUESTS_TARGET = 1
EVENTS_ROUTE = "POST /insights/directory/v1/events"

_RESOURCES, _GRANTS, _CURSORS = Resource.__table__, Grant.__table__, EventCursor.__table__
_RUNS, _PARTS = SyncRun.__table__, SyncPart.__table__


# --- what to write -------------------------------------------------------------------------------------------

@dataclass
class Expect:
    """The row a write changes, and what it says once a refresh has applied the write: ``live`` (there, not
    deleted), ``gone`` (absent or marked deleted) or ``suspended`` (a user's status)."""

    table: str  # "resources" | "grants"
    key: dict[str, str]
    state: str

    def met(self, row) -> bool:
        if self.state == "gone":
            return row is None or row.deleted_at is not None
        if row is None or row.deleted_at is not None:
            return False
        return self.state == "live" or row.status == self.state


def _resource(kind: str, external_id: str, state: str) -> Expect:
    return Expect("resources", {"type": kind, "external_id": external_id}, state)


def _grant(resource_type: str, resource_id: str, entitlement: str, principal_type: str, principal_id: str,
           state: str) -> Expect:
    return Expect("grants", {"resource_type": resource_type, "resource_id": resource_id, "entitlement": entitlement,
                             "principal_type": principal_type, "principal_id": principal_id}, state)


@dataclass
class Write:
    """One write through the simulator's API, and when it was answered and seen in the database (epoch s)."""

    kind: str
    method: str
    path: str
    body: dict | None
    expect: Expect | None  # None for user.create until the answer names the new user
    at_s: float = 0.0      # when to make it, from the start of the window
    answered: float | None = None
    visible: float | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float | None:
        return round(self.visible - self.answered, 2) if self.visible and self.answered else None


class _Targets:
    """Picks what each write changes from the tenant's dump: each write its own user, admin or (owner, member)
    link, so that no write undoes or hides another, and only a change the tenant does not have yet."""

    def __init__(self, dump: dict, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()  # user and admin ids, and "owner/member" links
        self.users = sorted(u["_id"] for u in dump["users"] if u.get("state") == "ACTIVATED" and not u.get("suspended"))
        rng.shuffle(self.users)
        self.members = {g["id"]: set(g["members"]) for g in dump["groups"]}
        self.app_users = {a["_id"]: set(a["users"]) for a in dump["apps"]}
        self.app_groups = {a["_id"]: set(a["groups"]) for a in dump["apps"]}
        self.admins = {a["_id"]: a.get("roleName") or "" for a in dump["admins"]}
        self.roles = sorted(r["name"] for r in dump["roles"])
        self.created = 0

    def _fresh_user(self) -> str:
        """An active user no other write changes."""
        user = next(u for u in self.users if u not in self.used)
        self.used.add(user)
        return user

    def _linked(self, links: dict[str, set[str]], own_user: bool) -> tuple[str, str]:
        """An (owner, member) link the tenant has; with ``own_user``, the member is a user no other write changes."""
        choices = [(owner, member) for owner in sorted(links) for member in sorted(links[owner])
                   if f"{owner}/{member}" not in self.used and not (own_user and member in self.used)]
        owner, member = self.rng.choice(choices)
        self.used.update({f"{owner}/{member}"} | ({member} if own_user else set()))
        return owner, member

    def _unlinked(self, links: dict[str, set[str]], member: str | None = None) -> tuple[str, str]:
        """An (owner, member) link the tenant lacks: for ``member``, or for a group no other write links."""
        owners, groups = sorted(links), sorted(self.members)
        for _ in range(10_000):
            owner, other = self.rng.choice(owners), member or self.rng.choice(groups)
            if other not in links[owner] and f"{owner}/{other}" not in self.used:
                self.used.add(f"{owner}/{other}")
                return owner, other
        raise RuntimeError("the tenant has no link left to add")

    def _fresh_admin(self) -> str:
        admin = next(a for a in sorted(self.admins) if a not in self.used)
        self.used.add(admin)
        return admin

    def write(self, kind: str) -> Write:
        if kind == "user.suspend":
            user = self._fresh_user()
            return Write(kind, "PUT", f"/api/systemusers/{user}", {"suspended": True, "state": "SUSPENDED"},
                         _resource("user", user, "suspended"))
        if kind == "user.create":
            self.created += 1
            name = f"bench.events.{self.created}"
            return Write(kind, "POST", "/api/systemusers",
                         {"username": name, "email": f"{name}@bench.test", "state": "ACTIVATED",
                          "firstname": "Bench", "lastname": f"Events {self.created}"}, None)
        if kind == "user.delete":
            user = self._fresh_user()
            return Write(kind, "DELETE", f"/api/systemusers/{user}", None, _resource("user", user, "gone"))
        if kind in ("group.add-member", "group.remove-member"):
            adding = kind == "group.add-member"
            group, user = (self._unlinked(self.members, self._fresh_user()) if adding
                           else self._linked(self.members, own_user=True))
            return Write(kind, "POST", f"/api/v2/usergroups/{group}/members",
                         {"op": "add" if adding else "remove", "type": "user", "id": user},
                         _grant("group", group, "member", "user", user, "live" if adding else "gone"))
        if kind in ("app.bind-group", "app.unbind-group", "app.bind-user", "app.unbind-user"):
            adding, to_group = kind.startswith("app.bind"), kind.endswith("-group")
            links = self.app_groups if to_group else self.app_users
            if adding:
                app, principal = self._unlinked(links, None if to_group else self._fresh_user())
            else:
                app, principal = self._linked(links, own_user=not to_group)
            principal_type = "group" if to_group else "user"
            return Write(kind, "POST", f"/api/v2/applications/{app}/associations",
                         {"op": "add" if adding else "remove", "type": "user_group" if to_group else "user",
                          "id": principal},
                         _grant("app", app, "access", principal_type, principal, "live" if adding else "gone"))
        if kind == "role.set":
            admin = self._fresh_admin()
            role = self.rng.choice([r for r in self.roles if r.casefold() != self.admins[admin].casefold()])
            return Write(kind, "PUT", f"/api/users/{admin}", {"roleName": role},
                         _grant("role", role_id(role), "assigned", "admin", admin, "live"))
        raise ValueError(f"unknown write {kind!r}")


def plan_writes(dump: dict, n: int, window_s: float, seed: int = 7) -> list[Write]:
    """n writes of the ``KINDS`` in turn, in a shuffled order, at random moments of a ``window_s`` window (sorted):
    random, so that they fall anywhere between two beat ticks. Deterministic for a dump and seed."""
    rng = random.Random(seed)
    targets = _Targets(dump, rng)
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    writes = [targets.write(kind) for kind in kinds]
    for write, at in zip(writes, sorted(rng.uniform(0, window_s) for _ in writes), strict=True):
        write.at_s = round(at, 2)
    return writes


# --- watching the database -----------------------------------------------------------------------------------

def epoch(value: datetime | None) -> float | None:
    """A database timestamp (aware: ``models.columns.UTCDateTime``) as epoch seconds."""
    return None if value is None else value.timestamp()


class Watcher:
    """Reads the rows the pending writes change, and the connector's ``event_cursors`` row, which each refresh
    overwrites: polled every ``POLL_S``, so every refresh of a 1-minute interval is recorded."""

    def __init__(self, engine, connector_id: int) -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.refreshes: list[dict] = []

    def _row(self, connection, expect: Expect):
        table = _RESOURCES if expect.table == "resources" else _GRANTS
        columns = [table.c.deleted_at] + ([table.c.status] if expect.table == "resources" else [])
        where = [table.c.connector_id == self.connector_id] + [table.c[k] == v for k, v in expect.key.items()]
        if expect.table == "grants":
            where.append(table.c.via == "")
        return connection.execute(select(*columns).where(*where)).first()

    def already(self, expect: Expect) -> bool:
        with self.engine.connect() as connection:
            return expect.met(self._row(connection, expect))

    def poll(self, pending: list[Write]) -> None:
        """Mark the pending writes that the database now shows (removing them from ``pending``); record a new
        refresh outcome."""
        with self.engine.connect() as connection:
            for write in list(pending):
                if write.expect.met(self._row(connection, write.expect)):
                    write.visible = time.time()
                    pending.remove(write)
            row = connection.execute(select(_CURSORS).where(_CURSORS.c.connector_id == self.connector_id)).first()
        if row is None or row.refreshed_at is None:
            return
        at = epoch(row.refreshed_at)
        if not self.refreshes or self.refreshes[-1]["refreshed_at"] != at:
            self.refreshes.append({"refreshed_at": at, "outcome": row.outcome, "reason": row.reason,
                                   "run_id": row.run_id, "requests": row.requests, "events": row.events,
                                   "reads": row.reads, "lag_seconds": row.lag_seconds})

    def settle(self, after: float, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout``) until a refresh recorded at or after ``after`` (epoch s) has been seen: the
        one whose change showed last writes its ``event_cursors`` row after its rows, and its requests belong to
        the span being measured."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.refreshes and self.refreshes[-1]["refreshed_at"] >= after):
            time.sleep(POLL_S)
            self.poll([])

    def events_runs(self, after_run_id: int) -> list[dict]:
        """The incremental runs after ``after_run_id``, with their one part's requests and counts."""
        query = (select(_RUNS.c.id, _RUNS.c.status, _RUNS.c.started_at, _RUNS.c.finished_at, _PARTS.c.requests,
                        _PARTS.c.counts)
                 .join(_PARTS, _PARTS.c.run_id == _RUNS.c.id)
                 .where(_RUNS.c.connector_id == self.connector_id, _RUNS.c.trigger == Trigger.EVENTS,
                        _RUNS.c.id > after_run_id).order_by(_RUNS.c.id))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_run_summary(row) for row in rows]

    def other_runs(self, after_run_id: int) -> list[tuple[int, str]]:
        """(id, trigger) of the runs other than refreshes after ``after_run_id``: a full sync meanwhile would
        make the simulator's counts more than the refreshes'."""
        with self.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(select(_RUNS.c.id, _RUNS.c.trigger).where(
                _RUNS.c.connector_id == self.connector_id, _RUNS.c.trigger != Trigger.EVENTS,
                _RUNS.c.id > after_run_id))]


def connector_row_id(engine, name: str) -> int:
    with engine.connect() as connection:
        table = Connector.__table__
        return connection.execute(select(table.c.id).where(table.c.name == name)).scalar_one()


def last_run_id(engine, connector_id: int) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.coalesce(func.max(_RUNS.c.id), 0)).where(
            _RUNS.c.connector_id == connector_id)).scalar_one()


def wait_full_sync(engine, connector_id: int, after_run_id: int, timeout: float) -> dict:
    """The first full sync after ``after_run_id``, once it has ended: the writes start after it, or it would read
    their changes itself and a refresh would wait for it."""
    deadline = time.monotonic() + timeout
    query = select(_RUNS.c.id, _RUNS.c.trigger, _RUNS.c.status, _RUNS.c.started_at, _RUNS.c.finished_at).where(
        _RUNS.c.connector_id == connector_id, _RUNS.c.trigger != Trigger.EVENTS, _RUNS.c.id > after_run_id,
        _RUNS.c.finished_at.is_not(None)).order_by(_RUNS.c.id).limit(1)
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            row = connection.execute(query).first()
        if row is not None:
            return {"run_id": row.id, "trigger": row.trigger, "status": row.status,
                    "wall_s": round(epoch(row.finished_at) - epoch(row.started_at), 3),
                    "finished_at": epoch(row.finished_at)}
        time.sleep(POLL_S)
    raise TimeoutError(f"beat's first full sync did not end within {timeout:.0f}s (see beat.log)")


def _run_summary(row) -> dict:
    """One applied refresh and whether it stayed within its bound: one request per events page and one per object
    read back (a read that needed more than one page, or a retry, would exceed it)."""
    counts = row.counts or {}
    started, finished = epoch(row.started_at), epoch(row.finished_at)
    bound = counts.get("event_requests", 0) + counts.get("reads", 0)
    return {"run_id": row.id, "status": row.status, "requests": row.requests,
            "event_requests": counts.get("event_requests"), "reads": counts.get("reads"),
            "events": counts.get("events"), "rows_written": counts.get("rows_written", 0),
            "wall_s": round(finished - started, 3) if started and finished else None,
            "bound": bound, "within_bound": row.requests <= bound}


# --- the phase -----------------------------------------------------------------------------------------------

def _make(client: httpx.Client, write: Write, watcher: Watcher) -> None:
    """Make one write; time its answer. A write whose change the database already shows would time nothing:
    it is recorded as an error instead."""
    if write.expect is not None and watcher.already(write.expect):
        write.error = "the database already showed the change"
        return
    response = client.request(write.method, write.path, json=write.body)
    write.answered = time.time()
    if response.status_code >= 300:
        write.error = f"{response.status_code} {response.text[:200]}"
        return
    if write.kind == "user.create":
        write.expect = _resource("user", response.json()["_id"], "live")


@dataclass
class Measured:
    """The writes phase: the writes, what the watcher recorded, and the simulator's counters over the same span
    (reset before the first write, read once the last change showed)."""

    writes: list[Write]
    watcher: Watcher
    sim_stats: dict
    started: float  # epoch s
    ended: float


def measure(engine, connector_id: int, sim, writes: list[Write], *, interval_s: float, log=print) -> Measured:
    """Make the writes at their moments and poll until each shows in the database, for at most two intervals
    and 30 s after the last one (a refresh that never comes is a missing figure, not a hang)."""
    watcher = Watcher(engine, connector_id)
    queue = sorted(writes, key=lambda w: w.at_s)
    pending: list[Write] = []
    sim.reset_stats()
    started, start = time.time(), time.monotonic()
    deadline = start + (queue[-1].at_s if queue else 0) + 2 * interval_s + 30
    with httpx.Client(base_url=sim.url, headers={"x-api-key": sim.api_key}, timeout=30) as client:
        while (queue or pending) and time.monotonic() < deadline:
            while queue and time.monotonic() - start >= queue[0].at_s:
                write = queue.pop(0)
                _make(client, write, watcher)
                if write.error is None:
                    pending.append(write)
            watcher.poll(pending)
            wait = POLL_S if not queue else min(POLL_S, max(0.0, start + queue[0].at_s - time.monotonic()))
            time.sleep(wait)
    if pending:
        log(f"events: {len(pending)} of {len(writes)} changes not in the database "
            f"{interval_s * 2 + 30:.0f}s after the last write")
    # The refresh that applied the last change records its outcome just after its rows: recorded within half an
    # interval before they showed (the refresh before it ran an interval earlier), or soon after.
    watcher.settle(max((w.visible for w in writes if w.visible), default=started) - interval_s / 2)
    return Measured(writes, watcher, sim.stats(), started, time.time())


def quiet_minute(sim, watcher: Watcher, interval_s: float) -> dict:
    """What one refresh with nothing new costs, seen from both sides: the simulator's counters reset now (every
    change is applied, so no write and no read-back is due), then read when the next quiet refresh is recorded;
    ``event_cursors`` says what that refresh counted. Refreshes in between (a skipped one) are listed."""
    sim.reset_stats()
    reset_at = time.time()
    deadline = time.monotonic() + 2 * interval_s + 30
    seen = len(watcher.refreshes)
    while time.monotonic() < deadline:
        watcher.poll([])
        after = [r for r in watcher.refreshes[seen:] if r["refreshed_at"] > reset_at]
        quiet = next((r for r in after if r["outcome"] == "quiet"), None)
        if quiet is not None:
            stats = sim.stats()
            return {"outcome": quiet["outcome"], "requests": quiet["requests"], "sim_requests": stats["requests"],
                    "sim_by_route": stats["by_route"],
                    "seconds_after_reset": round(quiet["refreshed_at"] - reset_at, 1),
                    "refreshes_between": [r["outcome"] for r in after if r is not quiet]}
        time.sleep(POLL_S)
    return {"outcome": None, "requests": None, "sim_requests": None, "sim_by_route": {},
            "refreshes_between": [r["outcome"] for r in watcher.refreshes[seen:]]}


def percentile(values: list[float], q: int) -> float | None:
    """The q-th percentile of ``values`` (inclusive method), to 2 decimals; None for none."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def summarize(measured: Measured, applied: list[dict], quiet: dict, other_runs: list[tuple[int, str]]) -> dict:
    """The phase's figures: latencies, refreshes by outcome, each applied refresh against its bound, the quiet
    minute, and the simulator's count of the writes phase against what its refreshes recorded."""
    writes, watcher = measured.writes, measured.watcher
    latencies = sorted(w.latency_s for w in writes if w.latency_s is not None)
    by_kind: dict[str, list[float]] = {}
    for write in writes:
        if write.latency_s is not None:
            by_kind.setdefault(write.kind, []).append(write.latency_s)
    return {
        "changes": len(writes),
        "visible": len(latencies),
        "errors": [f"{w.kind} {w.path}: {w.error}" for w in writes if w.error],
        "not_visible": [f"{w.kind} {w.path}" for w in writes if w.error is None and w.visible is None],
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "max": latencies[-1] if latencies else None, "min": latencies[0] if latencies else None},
        "latency_by_kind_max_s": {kind: max(values) for kind, values in sorted(by_kind.items())},
        "refresh_outcomes": dict(Counter(r["outcome"] for r in watcher.refreshes)),
        "refreshes": watcher.refreshes,
        "applied": applied,
        "applied_within_bound": sum(1 for a in applied if a["within_bound"]),
        "refresh_wall_s_max": max((a["wall_s"] for a in applied if a["wall_s"] is not None), default=None),
        # The refreshes' own figure (event_cursors.lag_seconds: the oldest applied event's age when written): the
        # harness's max latency within a poll, unless the first refresh re-read events from before the phase
        # (its window reaches an overlap back before the full sync's start).
        "refresh_lag_s_max": max((r["lag_seconds"] for r in watcher.refreshes if r["lag_seconds"] is not None),
                                 default=None),
        "quiet": quiet,
        "sim": _sim_check(measured),
        "other_runs_during": [list(r) for r in other_runs],
        "writes": [{**{k: v for k, v in asdict(w).items() if k not in ("body", "expect")},
                    "latency_s": w.latency_s} for w in writes],
    }


def _sim_check(measured: Measured) -> dict:
    """The writes phase seen by the simulator: the harness's writes, the events pages and every GET (the
    read-backs: no full sync ran meanwhile), against the requests the refreshes of that span recorded."""
    routes = measured.sim_stats.get("by_route", {})
    events_pages = routes.get(EVENTS_ROUTE, 0)
    reads = sum(n for route, n in routes.items() if route.startswith("GET "))
    recorded = sum(r["requests"] or 0 for r in measured.watcher.refreshes
                   if measured.started <= r["refreshed_at"] <= measured.ended)
    return {"requests": measured.sim_stats.get("requests"),
            "writes": sum(1 for w in measured.writes if w.answered is not None),
            "events_pages": events_pages, "reads": reads, "refresh_requests_recorded": recorded,
            "matches": events_pages + reads == recorded}


__all__ = ["KINDS", "LATENCY_P50_TARGET_S", "LATENCY_P95_TARGET_S", "QUIET_REQUESTS_TARGET", "Measured", "Watcher",
           "Write", "epoch", "measure", "percentile", "plan_writes", "quiet_minute", "summarize"]
