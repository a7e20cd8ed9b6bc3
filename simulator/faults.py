"""Fault injection: latency, random server errors, a rate limit, and targeted rules.

Why: the client and the sync must survive what JumpCloud does when pushed or broken (429 with or without
`Retry-After`, 5xx from the service or its load balancer, slow answers, connections cut mid-body, bad JSON, totals
that disagree with the rows, data changing between pages, a key revoked or an org gone mid-run). All knobs change
at runtime through `GET|PUT|DELETE /_sim/faults`. Random choices come from an rng seeded by `seed`, so a run with
the same requests fails the same way.

Config JSON (every key optional on PUT; PUT merges, `rules` replaces the list):

    {"latency_ms": 0, "latency_jitter_ms": 0,
     "error_rate": 0.0, "error_statuses": [500, 502, 503], "seed": 0,
     "rate_limit": null | {"rps": 50, "burst": 50, "retry_after": 1 | "auto" | null},
     "insights": {"delay_seconds": 0, "duplicate": false, "drop_next": 0, "retention_days": 90},
     "rules": [RULE, ...]}

`insights` changes the Directory Insights log of every org (simulator/insights.py): late, duplicated and lost
events, and how long they are kept.

A RULE picks requests and says what happens to them (see simulator/README.md for examples):

    selection  "path": regex (re.search on the path; required), "method": "GET" | null,
               "query": regex (re.search on the raw query string, e.g. "(^|&)skip=100(&|$)") | null,
               "after": n (let the first n matching requests through untouched), "times": n | null (apply to
               the next n requests, then the rule is dropped; null: forever)
    answer     "status": 100..599 instead of the real answer, with "retry_after": seconds | null,
               "message": text | null, "error": text | null (an "error" field in the body; 401 defaults to
               JumpCloud's {"error": "Unauthorized", "message": "Unauthorized: api key user not found"})
    slow       "delay_ms": sleep before answering (combines with everything)
    damage     "action": "drop" (200 + headers + half the body, then the connection is closed),
               "truncate" (the first half of the real body, Content-Length to match),
               "malformed" (the real status and headers, the body replaced by "body" (default
               "<html>oops</html>"), "content_type" to change the Content-Type too),
               "drip" (the real answer, its body a byte at a time with "delay_ms" (default 1000) between
               bytes: each read is quick, the whole answer is not)
    lie        "total_delta": n, added to the listing's total (v1 `totalCount`, v2 `x-total-count`; not below 0)
    change     "mutate": {"add_users": n, "remove_users": n, "add_groups": n, "remove_groups": n,
                          "add_members": n, "remove_members": n, "group": id | null,
                          "add_at": "end" | "start", "remove_at": "start" | "end"}
               applied to the request's org just before it is served (see simulator/mutate.py)
    revoke     "revoke_key": true (the API key stops working from this request on: 401),
               "remove_org": true (the request's org disappears from this request on: 404)

`status` and `action` answer the request themselves; they exclude `total_delta` and `mutate`.

Order per /api request: latency, then rules (the first rule that matches and is past its `after` wins; `times`
counts down), then, unless that rule answers with `status` or `action`, the rate limit and the random error rate
(a rule that loses to them is not used up); then the rule's delay, its status answer or its revoke, the key and
org checks, its mutation, the route, and the rule's damage to the response.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from simulator.insights import InsightsFaults

_ERROR_STATUSES = (500, 502, 503)
ACTIONS = ("drop", "truncate", "malformed", "drip")
MUTATIONS = ("add_users", "remove_users", "add_groups", "remove_groups", "add_members", "remove_members")
_MUTATE_KEYS = frozenset(MUTATIONS) | {"group", "add_at", "remove_at"}
_RULE_KEYS = ("path", "method", "query", "status", "times", "after", "retry_after", "message", "error", "delay_ms",
              "action", "body", "content_type", "total_delta", "mutate", "revoke_key", "remove_org")
UNAUTHORIZED_MESSAGE = "Unauthorized: api key user not found"


@dataclass
class FaultRule:
    path: str
    status: int | None = None
    method: str | None = None
    query: str | None = None
    times: int | None = None
    after: int = 0
    retry_after: float | None = None
    message: str | None = None
    error: str | None = None
    delay_ms: float = 0.0
    action: str | None = None
    body: str | None = None
    content_type: str | None = None
    total_delta: int | None = None
    mutate: dict[str, Any] | None = None
    revoke_key: bool = False
    remove_org: bool = False

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)
        self._query = re.compile(self.query) if self.query is not None else None
        if self.method:
            self.method = self.method.upper()
        self._check()

    def _check(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("statuses must be HTTP status codes")
        if self.times is not None and self.times < 1:
            raise ValueError("rule times must be at least 1 (or null for forever)")
        if self.after < 0 or self.delay_ms < 0:
            raise ValueError("rule after and delay_ms must be >= 0")
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"rule action must be one of {', '.join(ACTIONS)}")
        if self.status is not None and self.action is not None:
            raise ValueError("a rule answers with a status or an action, not both")
        if self.answers and (self.total_delta is not None or self.mutate):
            raise ValueError("total_delta and mutate change a real answer; they cannot go with status or action")
        if self.mutate is not None:
            _check_mutate(self.mutate)
        if not (self.answers or self.delay_ms or self.total_delta is not None or self.mutate or self.revoke_key
                or self.remove_org):
            raise ValueError("a rule needs an effect: status, action, delay_ms, total_delta, mutate, revoke_key "
                             "or remove_org")

    @property
    def answers(self) -> bool:
        """Whether the rule answers the request itself (no rate limit or random error can take its place)."""
        return self.status is not None or self.action is not None

    def matches(self, method: str, path: str, query: str = "") -> bool:
        return ((self.method is None or self.method == method) and self._pattern.search(path) is not None
                and (self._query is None or self._query.search(query) is not None))

    def decision(self) -> FaultDecision | None:
        if self.status is None:
            return None
        retry = None if self.retry_after is None else _header_seconds(self.retry_after)
        error = self.error
        message = self.message
        if self.status == 401:
            error = error or "Unauthorized"
            message = message or UNAUTHORIZED_MESSAGE
        return FaultDecision(self.status, message or _reason(self.status), retry, "rule", error)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _RULE_KEYS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict):
            raise TypeError("a rule is a JSON object")
        unknown = set(data) - set(_RULE_KEYS)
        if unknown:
            raise ValueError(f"unknown rule settings: {', '.join(sorted(unknown))}")
        return cls(
            path=str(data["path"]), status=_opt_int(data.get("status")), method=data.get("method"),
            query=None if data.get("query") is None else str(data["query"]),
            times=_opt_int(data.get("times")), after=int(data.get("after") or 0),
            retry_after=_opt_float(data.get("retry_after")), message=data.get("message"), error=data.get("error"),
            delay_ms=float(data.get("delay_ms") or 0), action=data.get("action"), body=data.get("body"),
            content_type=data.get("content_type"), total_delta=_opt_int(data.get("total_delta")),
            mutate=None if data.get("mutate") is None else dict(data["mutate"]),
            revoke_key=_flag(data.get("revoke_key")), remove_org=_flag(data.get("remove_org")),
        )


def _check_mutate(mutate: dict[str, Any]) -> None:
    unknown = set(mutate) - _MUTATE_KEYS
    if unknown:
        raise ValueError(f"unknown mutate settings: {', '.join(sorted(unknown))}")
    for key in MUTATIONS:
        value = mutate.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"mutate.{key} must be an integer >= 0")
    if not any(mutate.get(key) for key in MUTATIONS):
        raise ValueError(f"mutate needs one of {', '.join(MUTATIONS)}")
    for key in ("add_at", "remove_at"):
        if mutate.get(key, "start") not in ("start", "end"):
            raise ValueError(f'mutate.{key} must be "start" or "end"')
    if mutate.get("group") is not None and not isinstance(mutate["group"], str):
        raise ValueError("mutate.group must be a group id")


@dataclass
class RateLimit:
    """A token bucket: `rps` tokens a second, up to `burst` saved. `retry_after`: seconds to put in a
    `Retry-After` header, "auto" for the time until the next token, or None to send no header."""

    rps: float
    burst: float | None = None
    retry_after: float | str | None = None

    def __post_init__(self) -> None:
        if self.rps <= 0:
            raise ValueError("rate_limit.rps must be positive")
        if self.retry_after is not None and self.retry_after != "auto" and not isinstance(self.retry_after, int | float):
            raise ValueError('rate_limit.retry_after must be a number, "auto" or null')
        self._tokens = float(self.capacity)
        self._last: float | None = None  # set by the first request: the bucket starts full

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(self.rps, 1.0)

    def take(self, now: float) -> float | None:
        """Spend a token; None when allowed, else the seconds until one is available."""
        elapsed = 0.0 if self._last is None else max(0.0, now - self._last)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rps)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rps

    def to_dict(self) -> dict[str, Any]:
        return {"rps": self.rps, "burst": self.burst, "retry_after": self.retry_after}


@dataclass(frozen=True)
class FaultDecision:
    """An answer to send instead of the real one."""

    status: int
    message: str
    retry_after: str | None = None  # header value, when one is sent
    reason: str = "rule"  # rule | rate_limit | error_rate
    error: str | None = None  # the body's "error" field, when sent


@dataclass(frozen=True)
class FaultPlan:
    """What to do with one request: `decision` answers it instead of the route; `rule` is the rule that applies
    (its delay, revoke, mutation and damage are carried out by the app's gate)."""

    rule: FaultRule | None = None
    decision: FaultDecision | None = None


@dataclass
class Faults:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = _ERROR_STATUSES
    seed: int = 0
    rate_limit: RateLimit | None = None
    rules: list[FaultRule] = field(default_factory=list)
    #: Shared with every org's InsightsLog (SimulatorState hands it over), so it is changed in place.
    insights: InsightsFaults = field(default_factory=InsightsFaults)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # ---- runtime config ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "latency_jitter_ms": self.latency_jitter_ms,
            "error_rate": self.error_rate,
            "error_statuses": list(self.error_statuses),
            "seed": self.seed,
            "rate_limit": self.rate_limit.to_dict() if self.rate_limit else None,
            "insights": self.insights.to_dict(),
            "rules": [r.to_dict() for r in self.rules],
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a (partial) config; raises ValueError, leaving the config unchanged, when any part is invalid."""
        if not isinstance(changes, dict):
            raise ValueError("the fault settings are a JSON object")
        unknown = set(changes) - set(self.to_dict())
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        merged = {**self.to_dict(), **changes}
        if isinstance(changes.get("insights"), dict):  # merged key by key, as the top level is
            merged["insights"] = {**self.insights.to_dict(), **changes["insights"]}
        fresh = Faults.from_dict(merged)
        keep_bucket = changes.get("rate_limit", merged["rate_limit"]) == (
            self.rate_limit.to_dict() if self.rate_limit else None
        )
        bucket = self.rate_limit if keep_bucket else fresh.rate_limit
        rng = self._rng if "seed" not in changes else fresh._rng
        insights = self.insights
        insights.__dict__.update(fresh.insights.__dict__)
        self.__dict__.update(fresh.__dict__)
        self.rate_limit, self._rng, self.insights = bucket, rng, insights

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        try:
            latency = float(data.get("latency_ms") or 0)
            jitter = float(data.get("latency_jitter_ms") or 0)
            rate = float(data.get("error_rate") or 0)
            statuses = tuple(int(s) for s in (data.get("error_statuses") or _ERROR_STATUSES))
            rl = data.get("rate_limit")
            rate_limit = RateLimit(float(rl["rps"]), _opt_float(rl.get("burst")), rl.get("retry_after")) if rl else None
            rules = [FaultRule.from_dict(r) for r in data.get("rules") or []]
            faults = cls(latency_ms=latency, latency_jitter_ms=jitter, error_rate=rate, error_statuses=statuses,
                         seed=int(data.get("seed") or 0), rate_limit=rate_limit, rules=rules,
                         insights=InsightsFaults.from_dict(data.get("insights") or {}))
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"invalid fault settings: {exc}") from None
        if latency < 0 or jitter < 0 or not 0.0 <= rate <= 1.0:
            raise ValueError("latency must be >= 0 and error_rate between 0 and 1")
        if any(not 100 <= s <= 599 for s in statuses):
            raise ValueError("statuses must be HTTP status codes")
        return faults

    # ---- per request ---------------------------------------------------------------------------------

    def delay_seconds(self) -> float:
        if not self.latency_ms and not self.latency_jitter_ms:
            return 0.0
        jitter = self._rng.random() * self.latency_jitter_ms if self.latency_jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def plan(self, method: str, path: str, query: str = "", now: float | None = None) -> FaultPlan:
        """Decide the fate of one request (and count it against rules, the bucket and the rng)."""
        rule = self._match(method, path, query)
        if rule is not None and rule.answers:
            self._use(rule)
            return FaultPlan(rule, rule.decision())
        if self.rate_limit is not None:
            wait = self.rate_limit.take(time.monotonic() if now is None else now)
            if wait is not None:
                setting = self.rate_limit.retry_after
                retry = None if setting is None else _header_seconds(wait if setting == "auto" else float(setting))
                return FaultPlan(None, FaultDecision(429, "Too Many Requests", retry, "rate_limit"))
        if self.error_rate and self._rng.random() < self.error_rate:
            status = self._rng.choice(self.error_statuses)
            return FaultPlan(None, FaultDecision(status, _reason(status), None, "error_rate"))
        if rule is not None:
            self._use(rule)
        return FaultPlan(rule, None)

    def _match(self, method: str, path: str, query: str) -> FaultRule | None:
        """The first matching rule past its `after` (earlier ones still waiting count the request down)."""
        for rule in self.rules:
            if rule.matches(method, path, query):
                if rule.after > 0:
                    rule.after -= 1
                    continue
                return rule
        return None

    def _use(self, rule: FaultRule) -> None:
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                self.rules = [r for r in self.rules if r is not rule]


def _header_seconds(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that honours it is not throttled again."""
    return str(max(0, math.ceil(seconds)))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(f"{value!r} is not an integer")
    return int(value)


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
