"""Approvals: the decisions of the people other than its requester that a request awaits, and its expiry.

A request that the connector's approval rules match (provisioning.approval_policy) is accepted as
``awaiting_approval`` and not enqueued; enough distinct approvers move it to ``pending``, one denial to
``denied``, the beat task ``expire_due`` to ``expired`` once its time ran out.

A decision is one transaction that first takes the request's row (a conditional update of a request still
awaiting approval: the row lock on PostgreSQL, the write lock on SQLite), so two approvers deciding at once are
serialised: the second sees the first's decision, and only one of them moves the request to ``pending``. The
caller that got a ``pending`` request back from ``approve`` enqueues it (jumpsync.api.approve_request); if that
message is lost, the relay sends it, as for any pending request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from config.settings import Settings
from config.words import state
from models.columns import iso
from models.states import REQUESTS, RequestStatus
from models.tables import ProvisioningDecision, ProvisioningRequest, table_of, utcnow
from provisioning.requests import view

_REQUESTS = table_of(ProvisioningRequest)
_AWAITING = RequestStatus.AWAITING_APPROVAL
APPROVE, DENY = "approve", "deny"
MAX_COMMENT = 2000

class ApprovalError(ValueError):
    """A decision that cannot be recorded; the message names the problem."""


class UnknownRequest(ApprovalError, LookupError):
    """No request has this id."""


class NotAwaitingApproval(ApprovalError):
    """The request is not (or no longer) awaiting approval: approved, denied, expired, or never needed it."""


class SelfApproval(ApprovalError):
    """The requester tried to approve their own request."""


class DuplicateDecision(ApprovalError):
    """This principal has decided this request already."""


# --- what is shown --------------------------------------------------------------------------------------------------

def decision_view(row: ProvisioningDecision) -> dict[str, Any]:
    return {"decision": row.decision, "decided_by": row.decided_by, "decided_at": iso(row.decided_at),
            "comment": row.comment}


def _decisions(session: Session, request_id: str) -> list[ProvisioningDecision]:
    return list(session.execute(select(ProvisioningDecision).where(
        col(ProvisioningDecision.request_id) == request_id).order_by(col(ProvisioningDecision.id))).scalars())


def detail_view(session: Session, row: ProvisioningRequest) -> dict[str, Any]:
    """The request view; for a request that needed approval, with how many approvers, until when, and every
    decision in order."""
    shown = view(row)
    if row.approvals_required is not None:
        shown["approvals_required"] = row.approvals_required
        shown["approval_expires_at"] = iso(row.approval_expires_at)
        shown["decisions"] = [decision_view(d) for d in _decisions(session, row.id)]
    return shown


def detail(engine: Engine, request_id: str) -> dict[str, Any] | None:
    """``detail_view`` of one request, or None."""
    with Session(engine) as session:
        row = session.get(ProvisioningRequest, request_id)
        return detail_view(session, row) if row else None


def awaiting(engine: Engine, *, connector: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The requests awaiting approval, oldest first (the first to expire first), each with its decisions."""
    with Session(engine) as session:
        query = select(ProvisioningRequest).where(col(ProvisioningRequest.status) == _AWAITING)
        if connector:
            query = query.where(col(ProvisioningRequest.connector) == connector)
        rows = session.execute(query.order_by(col(ProvisioningRequest.created_at)).limit(limit)).scalars()
        return [detail_view(session, row) for row in rows]


# --- decisions --------------------------------------------------------------------------------------------------

def approve(engine: Engine, settings: Settings, request_id: str, decided_by: str,
            comment: str | None = None) -> dict[str, Any]:
    """Record ``decided_by``'s approval. With enough distinct approvers the request moves to ``pending``: the
    returned view says so, and the caller enqueues it (only this call saw that move). Raises an
    ``ApprovalError`` for an unknown id, a request not awaiting approval, the requester approving their own
    request, or a second decision by the same principal."""
    return _decide(engine, request_id, decided_by, APPROVE, comment)


def deny(engine: Engine, settings: Settings, request_id: str, decided_by: str,
         comment: str | None = None) -> dict[str, Any]:
    """Record ``decided_by``'s denial: the request is ``denied`` and never applied. One denial is enough; the
    requester may deny (withdraw) their own request. Raises as ``approve`` does."""
    return _decide(engine, request_id, decided_by, DENY, comment)


def _check_principal(decided_by: str, comment: str | None) -> None:
    if not decided_by or not decided_by.strip():
        raise ApprovalError("a decision needs the principal who makes it")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ApprovalError(f"the comment is longer than {MAX_COMMENT} characters")


def _take(session: Session, request_id: str, now: datetime) -> ProvisioningRequest:
    """Lock the request for this transaction if it awaits approval, and read it; else raise, naming why."""
    taken = session.execute(update(_REQUESTS).where(_REQUESTS.c.id == request_id, _REQUESTS.c.status == _AWAITING)
                            .values(updated_at=now))
    row = session.get(ProvisioningRequest, request_id, populate_existing=True)
    if row is None:
        raise UnknownRequest(f"no provisioning request {request_id!r}")
    if taken.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        raise NotAwaitingApproval(f"request {request_id} {state(row.status)}; only a request awaiting approval can "
                                  "be approved or denied")
    return row


def _decide(engine: Engine, request_id: str, decided_by: str, decision: str, comment: str | None) -> dict[str, Any]:
    _check_principal(decided_by, comment)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        row = _take(session, request_id, now)
        if row.approval_expires_at is not None and row.approval_expires_at <= now:
            _expire(session, [request_id], now)
            session.commit()
            raise NotAwaitingApproval(f"request {request_id} expired at {iso(row.approval_expires_at)} before "
                                      "it was approved; ask for it again")
        if decision == APPROVE and row.requested_by is not None and row.requested_by == decided_by:
            raise SelfApproval(f"{decided_by} asked for request {request_id} and cannot approve it; another "
                               "principal must")
        earlier = [d for d in _decisions(session, request_id) if d.decided_by == decided_by]
        if earlier:
            raise DuplicateDecision(f"{decided_by} already decided request {request_id} "
                                    f"({earlier[0].decision}, {iso(earlier[0].decided_at)}); a second decision by "
                                    "the same principal does not count")
        session.add(ProvisioningDecision(request_id=request_id, decision=decision, decided_by=decided_by,
                                         decided_at=now, comment=comment))
        session.flush()
        if decision == DENY:
            reason = f"denied by {decided_by}" + (f": {comment}" if comment else "")
            _move(session, request_id, REQUESTS.move(_AWAITING, RequestStatus.DENIED),
                  finished_at=now, updated_at=now, last_error=reason)
        else:
            approvals = session.execute(select(func.count(func.distinct(col(ProvisioningDecision.decided_by))))
                                        .where(col(ProvisioningDecision.request_id) == request_id,
                                               col(ProvisioningDecision.decision) == APPROVE)).scalar_one()
            if approvals >= (row.approvals_required or 1):
                _move(session, request_id, REQUESTS.move(_AWAITING, RequestStatus.PENDING),
                      updated_at=now, enqueued_at=now)
        session.refresh(row)
        decided = detail_view(session, row)  # as this transaction leaves it: a later approver's move is theirs
        try:
            session.commit()
        except IntegrityError:  # the unique (request, principal): the same principal, at the same moment
            session.rollback()
            raise DuplicateDecision(f"{decided_by} already decided request {request_id}") from None
        return decided


def _move(session: Session, request_id: str, status: RequestStatus, **values: Any) -> None:
    """The move out of awaiting approval, conditional on the request still awaiting it (this transaction holds
    the row, so it does)."""
    moved = session.execute(update(_REQUESTS).where(_REQUESTS.c.id == request_id, _REQUESTS.c.status == _AWAITING)
                            .values(status=status, **values))
    if moved.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        raise NotAwaitingApproval(f"request {request_id} stopped awaiting approval while it was being decided")


# --- expiry -------------------------------------------------------------------------------------------------------

def _expire(session: Session, ids: list[str], now: datetime) -> list[str]:
    expired = REQUESTS.move(_AWAITING, RequestStatus.EXPIRED)
    returned = session.execute(update(_REQUESTS).where(
        _REQUESTS.c.id.in_(ids), _REQUESTS.c.status == _AWAITING, _REQUESTS.c.approval_expires_at <= now,
    ).values(status=expired, updated_at=now, finished_at=now,
             last_error="not approved in time: expired at " + now.isoformat()).returning(_REQUESTS.c.id))
    return list(returned.scalars())


def expire_due(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Move the requests whose approval time ran out to ``expired``; their views. Each move is conditional, so
    a request approved at the same moment is either released or expired, never both."""
    now = now or utcnow()
    with Session(engine, expire_on_commit=False) as session:
        due = list(session.execute(select(col(ProvisioningRequest.id)).where(
            col(ProvisioningRequest.status) == _AWAITING,
            col(ProvisioningRequest.approval_expires_at) <= now).limit(1000)).scalars())
        if not due:
            return []
        expired = _expire(session, due, now)
        session.commit()
        rows = session.execute(select(ProvisioningRequest).where(col(ProvisioningRequest.id).in_(expired))
                               ).scalars()
        return [detail_view(session, row) for row in rows]
