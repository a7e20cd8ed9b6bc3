"""The audit trail of provisioning: who submitted, approved, denied and retried a request, and what came of it.

Read from the database, not from logs, so that it is as complete as the records: a request's submission (its
``created_at``) and outcome (its ``finished_at``), each approver's decision (``provisioning_decisions``) and each
retry (``provisioning_retries``). One query per source, each bounded by the window and the limit, merged in
order of time, then request; none per request. ``detail`` holds a comment, an error or a result's ids: never
parameters beyond what was applied, never a secret (requests hold none).

A retry clears the failure it retries (``last_error``, ``finished_at``), so a retried request's earlier failure
shows as its retry, and only its last outcome as an outcome.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from models.columns import as_utc, iso
from models.states import RequestStatus
from models.tables import ProvisioningDecision, ProvisioningRequest, ProvisioningRetry

_DETAIL_MAX = 2000


class AuditKind(enum.StrEnum):
    """What happened. Listed in the order events at the same instant, on the same request, are shown."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    RETRIED = "retried"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


_ORDER = {kind: index for index, kind in enumerate(AuditKind)}
#: The statuses a request's ``finished_at`` records an outcome of; ``denied`` is its denial's decision already.
_OUTCOMES = {RequestStatus.SUCCEEDED: AuditKind.SUCCEEDED, RequestStatus.FAILED: AuditKind.FAILED,
             RequestStatus.REJECTED: AuditKind.REJECTED, RequestStatus.EXPIRED: AuditKind.EXPIRED}
_DECISIONS = {"approve": AuditKind.APPROVED, "deny": AuditKind.DENIED}


@dataclass(frozen=True)
class AuditEvent:
    """One event. ``actor`` is the principal (``token:<name>``, ``cli:<login>``, ``broker:<claim>``) who
    submitted, decided or retried; None for what the workers and the expiry did."""

    at: datetime
    kind: AuditKind
    request_id: str
    connector: str
    action: str
    actor: str | None
    on_behalf_of: str | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "kind": self.kind.value, "request_id": self.request_id,
                "connector": self.connector, "action": self.action, "actor": self.actor,
                "on_behalf_of": self.on_behalf_of, "detail": self.detail}

    def to_json(self) -> str:
        """The event as one line of JSON (a SIEM's JSON lines)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


def _sort_key(event: AuditEvent) -> tuple[datetime, str, int]:
    return event.at, event.request_id, _ORDER[event.kind]


def _detail(text: str | None) -> str | None:
    return None if text is None else text[:_DETAIL_MAX]


def _result_summary(result: dict[str, Any] | None, dry_run: bool) -> str | None:
    """What was applied: the result's ids and whether anything changed, as compact JSON."""
    summary = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str) if result else None
    if dry_run:
        return f"dry run: {summary}" if summary else "dry run"
    return summary


def events(engine: Engine, *, connector: str | Collection[str] | None = None, since: datetime | None = None,
           until: datetime | None = None, limit: int | None = None) -> list[AuditEvent]:
    """The events from ``since`` (inclusive) to ``until`` (exclusive), oldest first, at most ``limit``.

    ``connector`` is one connector's name or several (a token reads only some); None for every connector.
    """
    names: list[str] | None = None
    if connector is not None:
        names = [connector] if isinstance(connector, str) else sorted(connector)
        if not names:
            return []
    since = as_utc(since) if since is not None else None
    until = as_utc(until) if until is not None else None
    R = ProvisioningRequest

    def bounded(query: Any, at: Any) -> Any:
        if names is not None:
            query = query.where(col(R.connector).in_(names))
        if since is not None:
            query = query.where(at >= since)
        if until is not None:
            query = query.where(at < until)
        query = query.order_by(at, col(R.id))
        return query.limit(limit) if limit is not None else query

    found: list[AuditEvent] = []
    with engine.connect() as connection:
        submitted = bounded(select(col(R.id), col(R.connector), col(R.action), col(R.requested_by),
                                   col(R.on_behalf_of), col(R.created_at)), col(R.created_at))
        found += [AuditEvent(at=as_utc(row.created_at), kind=AuditKind.SUBMITTED, request_id=row.id,
                             connector=row.connector, action=row.action, actor=row.requested_by,
                             on_behalf_of=row.on_behalf_of, detail=None)
                  for row in connection.execute(submitted)]
        finished = bounded(select(col(R.id), col(R.connector), col(R.action), col(R.on_behalf_of), col(R.status),
                                  col(R.finished_at), col(R.last_error), col(R.result), col(R.dry_run))
                           .where(col(R.status).in_(list(_OUTCOMES)), col(R.finished_at).is_not(None)),
                           col(R.finished_at))
        for row in connection.execute(finished):
            kind = _OUTCOMES[RequestStatus(row.status)]
            detail = _result_summary(row.result, row.dry_run) if kind is AuditKind.SUCCEEDED else row.last_error
            found.append(AuditEvent(at=as_utc(row.finished_at), kind=kind, request_id=row.id,
                                    connector=row.connector, action=row.action, actor=None,
                                    on_behalf_of=row.on_behalf_of, detail=_detail(detail)))
        D = ProvisioningDecision
        decided = bounded(select(col(R.id), col(R.connector), col(R.action), col(R.on_behalf_of), col(D.decision),
                                 col(D.decided_by), col(D.decided_at), col(D.comment))
                          .join(R, col(R.id) == col(D.request_id)), col(D.decided_at))
        found += [AuditEvent(at=as_utc(row.decided_at), kind=_DECISIONS[row.decision], request_id=row.id,
                             connector=row.connector, action=row.action, actor=row.decided_by,
                             on_behalf_of=row.on_behalf_of, detail=_detail(row.comment))
                  for row in connection.execute(decided) if row.decision in _DECISIONS]
        T = ProvisioningRetry
        retried = bounded(select(col(R.id), col(R.connector), col(R.action), col(R.on_behalf_of),
                                 col(T.retried_by), col(T.retried_at))
                          .join(R, col(R.id) == col(T.request_id)), col(T.retried_at))
        found += [AuditEvent(at=as_utc(row.retried_at), kind=AuditKind.RETRIED, request_id=row.id,
                             connector=row.connector, action=row.action, actor=row.retried_by,
                             on_behalf_of=row.on_behalf_of, detail=None)
                  for row in connection.execute(retried)]
    found.sort(key=_sort_key)
    return found[:limit] if limit is not None else found
