"""Directory Insights: the events JumpCloud records for every write to an org, and the query that pages them.

Every write of `Tenant` (the v1/v2 write API and the `/_sim` mutations alike) records the event JumpCloud would
emit (`InsightsLog.record`); `POST /insights/directory/v1/events` (routes_insights) serves them sorted by
timestamp, then id, paged by `search_after` as the Directory Insights spec says. Which shapes are documented by
JumpCloud and which are inferred: simulator/README.md, "Directory Insights".

Fault knobs (`PUT /_sim/faults {"insights": {...}}`, `InsightsFaults`): `delay_seconds` (an event is served
only that long after its timestamp: late events), `duplicate` (every event recorded twice, same id), `drop_next`
(the next n events are never recorded: a gap), `retention_days` (90).
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SERVICE = "directory"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
#: The simulated administrator behind every write (the API key's owner).
INITIATOR = {"id": "5c0a8e7b0000000000000001", "type": "admin", "email": "api-admin@simulator.invalid"}


@dataclass
class InsightsFaults:
    delay_seconds: float = 0.0
    duplicate: bool = False
    drop_next: int = 0
    retention_days: float = 90.0

    def to_dict(self) -> dict[str, Any]:
        return {"delay_seconds": self.delay_seconds, "duplicate": self.duplicate, "drop_next": self.drop_next,
                "retention_days": self.retention_days}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InsightsFaults:
        if not isinstance(data, dict):
            raise ValueError("insights: a JSON object")
        unknown = set(data) - set(cls().to_dict())
        if unknown:
            raise ValueError(f"unknown insights settings: {', '.join(sorted(unknown))}")
        try:
            faults = cls(delay_seconds=float(data.get("delay_seconds") or 0), duplicate=bool(data.get("duplicate")),
                         drop_next=int(data.get("drop_next") or 0),
                         retention_days=float(data.get("retention_days", 90.0)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid insights settings: {exc}") from None
        if faults.delay_seconds < 0 or faults.drop_next < 0 or faults.retention_days <= 0:
            raise ValueError("insights: delay_seconds and drop_next must be >= 0, retention_days > 0")
        return faults


class InsightsLog:
    """One org's Directory Insights events, in (timestamp, id) order."""

    def __init__(self, org_id: str, clock=time.time) -> None:
        self.org_id = org_id
        self.faults = InsightsFaults()
        self._clock = clock
        self._keys: list[tuple[int, str, int]] = []  # (timestamp ms, id, copy): the sort order
        self._events: list[tuple[float, dict[str, Any]]] = []  # (visible from, event), parallel to _keys
        self._seq = 0
        self._last_ms = 0

    def __len__(self) -> int:
        return len(self._events)

    def record(self, event_type: str, *, resource: dict[str, Any] | None = None,
               changes: list[dict[str, Any]] | None = None, association: dict[str, Any] | None = None,
               application: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Log the event of one write; None when a `drop_next` gap swallowed it."""
        now = self._clock()
        ms = max(int(now * 1000), self._last_ms)  # the clock may step back; the log never does
        self._last_ms = ms
        self._seq += 1
        event: dict[str, Any] = {
            "id": f"{(ms // 1000) & 0xFFFFFFFF:08x}{self._seq:016x}", "event_type": event_type, "service": SERVICE,
            "organization": self.org_id, "timestamp": _timestamp(ms), "initiated_by": dict(INITIATOR),
            "auth_method": "api key", "client_ip": "127.0.0.1", "@version": "1", "success": True,
        }
        if resource is not None:
            event["resource"] = resource
        if changes is not None:
            event["changes"] = changes
        if association is not None:
            event["association"] = association
        if application is not None:
            event["application"] = application
        if self.faults.drop_next > 0:
            self.faults.drop_next -= 1
            return None
        visible = ms / 1000 + self.faults.delay_seconds
        for copy in range(2 if self.faults.duplicate else 1):
            key = (ms, event["id"], copy)
            at = bisect.bisect(self._keys, key)
            self._keys.insert(at, key)
            self._events.insert(at, (visible, event))
        return event

    def query(self, start: datetime, end: datetime | None, limit: int, descending: bool,
              search_after: tuple[int, str] | None) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """One page: the events in [start, end) visible now, after `search_after` in the chosen order; and the
        token of its last event (None for an empty page)."""
        now = self._clock()
        self._expire(now)
        keys = self._keys
        lo = bisect.bisect_left(keys, (int(start.timestamp() * 1000), "", 0))
        hi = bisect.bisect_left(keys, (int(end.timestamp() * 1000), "", 0)) if end is not None else len(keys)
        if search_after is not None:
            if descending:
                hi = min(hi, bisect.bisect_left(keys, (*search_after, 0)))
            else:
                lo = max(lo, bisect.bisect_right(keys, (*search_after, 2)))
        page: list[int] = []
        for index in (range(hi - 1, lo - 1, -1) if descending else range(lo, hi)):
            if self._events[index][0] <= now:
                page.append(index)
                if len(page) == limit:
                    break
        token = [keys[page[-1]][0], keys[page[-1]][1]] if page else None
        return [self._events[index][1] for index in page], token

    def _expire(self, now: float) -> None:
        """Events past retention are gone."""
        cutoff = int((now - self.faults.retention_days * 86400) * 1000)
        keep = bisect.bisect_left(self._keys, (cutoff, "", 0))
        if keep:
            del self._keys[:keep]
            del self._events[:keep]


def _timestamp(ms: int) -> str:
    """Directory events carry milliseconds: ``2026-12-04T10:00:00.123Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 time as the API takes it (`2026-12-04T10:00:00Z`, fractions allowed)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} is required (RFC 3339, e.g. 2026-12-04T10:00:00Z)")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} {value!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_search_after(value: Any) -> tuple[int, str] | None:
    """The `search_after` of a request: the `X-Search_after` of the previous page, `[epoch ms, id]`."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
            or not isinstance(value[0], (int, str)) or not isinstance(value[1], str)):
        raise ValueError("search_after must be the X-Search_after of the previous page: [epoch ms, id]")
    try:
        return int(value[0]), value[1]
    except ValueError:
        raise ValueError("search_after must be the X-Search_after of the previous page: [epoch ms, id]") from None


def token_header(token: list[Any] | None, requested: tuple[int, str] | None) -> str:
    """`X-Search_after`: present on every page (the spec says so); an empty page repeats the request's."""
    if token is None:
        token = list(requested) if requested is not None else []
    return json.dumps(token, separators=(",", ":"))


# --- the event of each write (simulator.model.Tenant calls these) ---------------------------------------------

def user_resource(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["_id"], "type": "user", "username": record.get("username")}


def admin_resource(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["_id"], "type": "admin", "email": record.get("email")}


def group_resource(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "type": "user_group", "name": record.get("name")}


def app_resource(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["_id"], "type": "application", "name": record.get("displayLabel") or record.get("name")}


def field_changes(before: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
    """`[{field, from, to}]` for the fields a write changed."""
    return [{"field": key, "from": before.get(key), "to": value} for key, value in changes.items()
            if before.get(key) != value]


def association(op: str, source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """An `association_change` body: `connection.from` is the object whose associations the write changed."""
    return {"op": op, "action_source": "manual", "attributes": None,
            "connection": {"from": source, "to": target}}


def side(kind: str, object_id: str, name: Any) -> dict[str, Any]:
    return {"type": kind, "object_id": object_id, "name": name}
