"""Fault injection: latency, random server errors, a rate limit, and targeted rules.

Why: the client must survive what JumpCloud does when pushed (429 with or without `Retry-After`, 5xx from the
service or its load balancer, slow answers). All knobs change at runtime through `GET|PUT /_sim/faults`.
Random choices come from an rng seeded by `seed`, so a run with the same requests fails the same way.

Config JSON (every key optional on PUT; PUT merges, `rules` replaces the list):

    {"latency_ms": 0, "latency_jitter_ms": 0,
     "error_rate": 0.0, "error_statuses": [500, 502, 503], "seed": 0,
     "rate_limit": null | {"rps": 50, "burst": 50, "retry_after": 1 | "auto" | null},
     "rules": [{"path": "regex", "method": "GET" | null, "status": 500, "times": 3 | null,
                "retry_after": 2 | null, "message": "..." | null}]}

Order per /api request: latency, then rules (first match wins; `times` counts down, the rule is dropped at 0),
then the rate limit, then the random error rate. `path` is searched (`re.search`) in the request path; anchor it
(`^/api/v2/usergroups$`) to match one route only.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

_ERROR_STATUSES = (500, 502, 503)


@dataclass
class FaultRule:
    path: str
    status: int
    method: str | None = None
    times: int | None = None
    retry_after: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)
        if self.method:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self._pattern.search(path) is not None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "method": self.method, "status": self.status, "times": self.times,
                "retry_after": self.retry_after, "message": self.message}


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


@dataclass
class Faults:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = _ERROR_STATUSES
    seed: int = 0
    rate_limit: RateLimit | None = None
    rules: list[FaultRule] = field(default_factory=list)

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
            "rules": [r.to_dict() for r in self.rules],
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a (partial) config; raises ValueError, leaving the config unchanged, when any part is invalid."""
        unknown = set(changes) - set(self.to_dict())
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        merged = {**self.to_dict(), **changes}
        fresh = Faults.from_dict(merged)
        keep_bucket = changes.get("rate_limit", merged["rate_limit"]) == (
            self.rate_limit.to_dict() if self.rate_limit else None
        )
        bucket = self.rate_limit if keep_bucket else fresh.rate_limit
        rng = self._rng if "seed" not in changes else fresh._rng
        self.__dict__.update(fresh.__dict__)
        self.rate_limit, self._rng = bucket, rng

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        try:
            latency = float(data.get("latency_ms") or 0)
            jitter = float(data.get("latency_jitter_ms") or 0)
            rate = float(data.get("error_rate") or 0)
            statuses = tuple(int(s) for s in (data.get("error_statuses") or _ERROR_STATUSES))
            rl = data.get("rate_limit")
            rate_limit = RateLimit(float(rl["rps"]), _opt_float(rl.get("burst")), rl.get("retry_after")) if rl else None
            rules = [
                FaultRule(path=str(r["path"]), status=int(r["status"]), method=r.get("method"),
                          times=None if r.get("times") is None else int(r["times"]),
                          retry_after=_opt_float(r.get("retry_after")), message=r.get("message"))
                for r in data.get("rules") or []
            ]
            faults = cls(latency_ms=latency, latency_jitter_ms=jitter, error_rate=rate, error_statuses=statuses,
                         seed=int(data.get("seed") or 0), rate_limit=rate_limit, rules=rules)
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"invalid fault settings: {exc}") from None
        if latency < 0 or jitter < 0 or not 0.0 <= rate <= 1.0:
            raise ValueError("latency must be >= 0 and error_rate between 0 and 1")
        if any(not 100 <= s <= 599 for s in statuses + tuple(r.status for r in rules)):
            raise ValueError("statuses must be HTTP status codes")
        return faults

    # ---- per request ---------------------------------------------------------------------------------

    def delay_seconds(self) -> float:
        if not self.latency_ms and not self.latency_jitter_ms:
            return 0.0
        jitter = self._rng.random() * self.latency_jitter_ms if self.latency_jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def decide(self, method: str, path: str, now: float | None = None) -> FaultDecision | None:
        for rule in self.rules:
            if rule.matches(method, path):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                retry = None if rule.retry_after is None else _header_seconds(rule.retry_after)
                return FaultDecision(rule.status, rule.message or _reason(rule.status), retry, "rule")
        if self.rate_limit is not None:
            wait = self.rate_limit.take(time.monotonic() if now is None else now)
            if wait is not None:
                setting = self.rate_limit.retry_after
                retry = None if setting is None else _header_seconds(wait if setting == "auto" else float(setting))
                return FaultDecision(429, "Too Many Requests", retry, "rate_limit")
        if self.error_rate and self._rng.random() < self.error_rate:
            status = self._rng.choice(self.error_statuses)
            return FaultDecision(status, _reason(status), None, "error_rate")
        return None


def _header_seconds(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that honours it is not throttled again."""
    return str(max(0, math.ceil(seconds)))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
