"""The life of a provisioning request in the database: accept or reject, claim, finish, relay, retry.

Every transition is a conditional update, so two workers (a redelivered message, a relay running beside the
original) can never both own a request: the loser's update matches no row.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from config.actions import MAX_TEXT
from config.settings import ConfigError, Settings, parse_duration
from config.words import state
from models.bulk import dialect_insert
from models.columns import iso
from models.connectors import registered_connector_id
from models.db import autocommit
from models.states import ENDED_REQUEST_STATUSES, REQUESTS, RequestStatus
from models.tables import ProvisioningRequest, ProvisioningRetry, table_of, utcnow
from provisioning.approval_policy import approvers_required
from provisioning.ordering import AHEAD_IN_LINE, target_key
from provisioning.params import InvalidRequest, check_texts, validate_params

log = logging.getLogger(__name__)

#: ``requested_by`` of a request proposed by a broker message: what the message claims, after this prefix, so that
#: nobody takes the claim for an identity (an authenticated principal is ``token:…`` or ``cli:…``, never this).
BROKER_REQUESTER_PREFIX = "broker:"


def view(row: ProvisioningRequest | Row[Any] | SimpleNamespace) -> dict[str, Any]:
    """The request as the CLI, the Python API and tests see it (a documented, stable shape)."""
    return {
        "id": row.id, "connector": row.connector, "action": row.action, "params": row.params,
        "idempotency_key": row.idempotency_key, "requested_by": row.requested_by,
        "on_behalf_of": row.on_behalf_of, "status": row.status,
        "dry_run": row.dry_run, "attempts": row.attempts, "last_error": row.last_error, "result": row.result,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
    }


@dataclass(frozen=True)
class Accepted:
    request: dict[str, Any]
    enqueue: bool  # False when the request was rejected, or is a repeat of an existing one


def _new_id() -> str:
    return uuid.uuid4().hex


def _find_by_key(session: Session, connector: str, key: str) -> ProvisioningRequest | None:
    return session.execute(select(ProvisioningRequest).where(
        col(ProvisioningRequest.connector) == connector, col(ProvisioningRequest.idempotency_key) == key)
    ).scalars().first()


def _reject(session: Session, *, connector: str, action: str, params: Any, key: str | None,
            requested_by: str | None, reason: str, on_behalf_of: str | None = None) -> Accepted:
    now = utcnow()
    row = ProvisioningRequest(id=_new_id(), connector=str(connector)[:128], action=str(action)[:64],
                              params=params if isinstance(params, dict) else {"raw": repr(params)[:2000]},
                              idempotency_key=key, requested_by=requested_by, on_behalf_of=on_behalf_of,
                              status=REQUESTS.create(RequestStatus.REJECTED),
                              last_error=reason, created_at=now, updated_at=now, finished_at=now)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the idempotency key is taken: record the rejection without it
        session.rollback()
        row.idempotency_key = None
        session.add(row)
        session.commit()
    return Accepted(view(row), enqueue=False)


def _normalized(action: str, params: Any) -> Any:
    """Parameters as they are stored (validated, unset ones left out), or as given if they do not validate."""
    try:
        return validate_params(action, params).model_dump(exclude_none=True)
    except InvalidRequest:
        return params


def _repeat(session: Session, existing: ProvisioningRequest, action: str, params: Any, key: str,
            requested_by: str | None, on_behalf_of: str | None) -> Accepted:
    """A request whose idempotency key was used already: the first one, if it asked for the same."""
    if (existing.action, existing.params) != (action, _normalized(action, params)):
        return _reject(session, connector=existing.connector, action=action, params=params, key=None,
                       requested_by=requested_by, on_behalf_of=on_behalf_of,
                       reason=f"idempotency key {key!r} was used for request {existing.id} "
                              "with a different action or parameters")
    return Accepted(view(existing), enqueue=False)


_REQUESTS = table_of(ProvisioningRequest)
_PENDING, _RUNNING = RequestStatus.PENDING, RequestStatus.RUNNING


@lru_cache(maxsize=None)
def _insert_new(dialect: str):
    """Insert a request unless its idempotency key is taken, returning its id if it was inserted."""
    return dialect_insert(dialect, _REQUESTS).on_conflict_do_nothing(
        index_elements=["connector", "idempotency_key"]).returning(_REQUESTS.c.id)


def check_submission(settings: Settings, connector: str, action: str, params: Any) -> str:
    """The configured name of the connector a person's request names (``config.names``: ``ACME`` is ``acme``),
    after checking what an entry point refuses before anything is written: ConfigError for an unknown connector
    (with the closest names), InvalidRequest for an unknown action or parameters the action does not take or
    lacks. What passes is a well-formed request; ``accept`` records it, ``rejected`` if the policy refuses it."""
    name = settings.connector(connector).name
    validate_params(action, params)
    return name


def accept(engine: Engine, settings: Settings, *, connector: str, action: str, params: Any,
           idempotency_key: str | None = None, requested_by: str | None = None,
           on_behalf_of: str | None = None, dry_run: bool = False, approval_floor: int = 0) -> Accepted:
    """Record a request: ``pending`` if it is valid and allowed, ``awaiting_approval`` (not to be enqueued) if
    the connector's approval rules match it, ``rejected`` with the reason otherwise.

    ``requested_by`` is the caller as the entry point knows it (``token:<name>``, ``cli:<login>``), never text
    the caller chose; ``on_behalf_of`` is whom the caller says it asks for, recorded as said. ``dry_run`` asks
    for a dry run; a connector whose policy is ``dry_run`` makes every request one, whatever the caller asks.
    ``approval_floor`` is the fewest approvers a valid request waits for, whatever the connector's rules (the
    rules may ask more): an entry point that cannot authenticate its caller proposes, and a principal decides.

    The same idempotency key again returns the first request (and asks for no second effect); reused for a
    different action or parameters, it is rejected. An empty or over-long key, requester or ``on_behalf_of``
    raises InvalidRequest before anything is written (the database could not store it).

    A valid request is one ``INSERT … ON CONFLICT DO NOTHING`` in autocommit mode (on PostgreSQL, one round
    trip besides the pool's ping): its key is looked up only when the insert finds it taken.
    """
    check_texts(idempotency_key=idempotency_key, requested_by=requested_by, on_behalf_of=on_behalf_of)
    try:
        config = settings.connector(connector)
        connector = config.name  # as configured: a request for ``ACME`` is one for ``acme``
        validated = validate_params(action, params)
        policy = config.provisioning
        if action not in policy.allowed_actions:
            raise InvalidRequest(f"action {action} is not allowed for connector {connector!r} "
                                 f"(allowed: {', '.join(policy.allowed_actions) or 'none'}); enable it in "
                                 f"[connectors.provisioning] allowed_actions")
    except (ConfigError, InvalidRequest) as exc:
        with Session(engine, expire_on_commit=False) as session:
            existing = _find_by_key(session, connector, idempotency_key) if idempotency_key else None
            if existing is not None and idempotency_key:
                return _repeat(session, existing, action, params, idempotency_key, requested_by, on_behalf_of)
            return _reject(session, connector=connector, action=action, params=params, key=idempotency_key,
                           requested_by=requested_by, on_behalf_of=on_behalf_of, reason=str(exc))
    cid = registered_connector_id(engine, config)  # once per process
    now = utcnow()
    row = {"id": _new_id(), "connector": connector, "action": action,
           "params": validated.model_dump(exclude_none=True), "idempotency_key": idempotency_key,
           "requested_by": requested_by, "on_behalf_of": on_behalf_of,
           "status": REQUESTS.create(RequestStatus.PENDING), "dry_run": policy.dry_run or dry_run, "attempts": 0,
           "last_error": None, "result": None, "claimed_by": None, "created_at": now, "updated_at": now,
           "enqueued_at": now, "started_at": None, "finished_at": None, "approvals_required": None,
           "approval_expires_at": None, "target_key": None}
    with engine.connect() as connection, autocommit(connection):
        if not row["dry_run"]:
            row["target_key"] = target_key(connection, cid, validated)
        approvers = max(approval_floor,
                        approvers_required(connection, cid, policy, action, validated) if policy.approval else 0)
        if approvers:  # recorded, not enqueued: it waits for its approvers (provisioning.approvals)
            row.update(status=REQUESTS.create(RequestStatus.AWAITING_APPROVAL), enqueued_at=None,
                       approvals_required=approvers,
                       approval_expires_at=now + parse_duration(policy.approval_expires))
        inserted = connection.execute(_insert_new(engine.dialect.name), row).first()
    if inserted is not None:
        return Accepted(view(SimpleNamespace(**row)), enqueue=not approvers)
    with Session(engine, expire_on_commit=False) as session:  # the key is taken (perhaps just now, by another)
        # Only a taken idempotency key makes the insert do nothing: NULL keys never conflict.
        existing = _find_by_key(session, connector, idempotency_key) if idempotency_key else None
        assert existing is not None and idempotency_key, "the insert did nothing, yet no request has the key"
        return _repeat(session, existing, action, params, idempotency_key, requested_by, on_behalf_of)


#: The claim, built once (Core, not the ORM: its bookkeeping costs more than the SQL). A pending request is taken
#: by anyone; a running one by the same message delivered again (its worker process died and Celery gave the
#: message back) or by anyone once its lease has run out; in each case only when no other request on its target
#: is ahead of it (provisioning.ordering). ``claim_on`` names the move each time it runs it.
_CLAIM = update(_REQUESTS).where(
    _REQUESTS.c.id == bindparam("request_id"),
    or_(_REQUESTS.c.status == _PENDING,
        (_REQUESTS.c.status == _RUNNING) & (_REQUESTS.c.claimed_by == bindparam("claimant")),
        (_REQUESTS.c.status == _RUNNING) & (_REQUESTS.c.started_at < bindparam("lease_began_before"))),
    _REQUESTS.c.target_key.is_(None) | ~AHEAD_IN_LINE,
).values(status=bindparam("claimed"), claimed_by=bindparam("claimant"), started_at=bindparam("now"),
         updated_at=bindparam("now"), attempts=_REQUESTS.c.attempts + 1).returning(*_REQUESTS.c)


def claim(engine: Engine, request_id: str, claimant: str, lease: timedelta) -> Row | None:
    """Take a request to run it (committed at once). ``claimant`` is the Celery task id."""
    with engine.connect() as connection:
        return claim_on(connection, request_id, claimant, lease)


def claim_on(connection: Connection, request_id: str, claimant: str, lease: timedelta) -> Row | None:
    """Take a request to run it, on ``connection`` (not in a transaction), committed at once: the row as claimed
    (a plain ``Row`` of the table's columns, read as attributes, tracked by no session), or None if it is not ours.

    One ``UPDATE … RETURNING`` (PostgreSQL; SQLite since 3.35) both takes the row and reads it back. Being a
    single statement, it runs in autocommit mode: on PostgreSQL no BEGIN and COMMIT round trips around it.
    """
    claimed = REQUESTS.move((_PENDING, _RUNNING), _RUNNING)
    now = utcnow()
    with autocommit(connection):
        returned = connection.execute(_CLAIM, {"request_id": request_id, "claimant": claimant, "now": now,
                                               "lease_began_before": now - lease, "claimed": claimed}).first()
    return returned


def _outcome_values(status: RequestStatus, result: dict | None, error: str | None) -> dict[str, Any]:
    """The columns an outcome sets; the update moves the request from running (``_outcome_statement``)."""
    status = REQUESTS.move(_RUNNING, RequestStatus(status))
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now, "last_error": error}
    if status in ENDED_REQUEST_STATUSES:
        values["finished_at"] = now
    if result is not None:
        values["result"] = result
    if status is _PENDING:
        values["enqueued_at"] = now
    return values


def finish(engine: Engine, request_id: str, claimant: str, *, status: RequestStatus, result: dict | None = None,
           error: str | None = None) -> bool:
    """Record the outcome (its own transaction), if ``claimant`` still owns the request."""
    with engine.begin() as connection:
        return _record_outcome(connection, request_id, claimant, _outcome_values(status, result, error))


def finish_in(session: Session, request_id: str, claimant: str, *, status: RequestStatus,
              result: dict | None = None,
              error: str | None = None) -> bool:
    """Record the outcome in ``session``'s transaction, if ``claimant`` still owns the request; neither commits
    nor rolls back: the caller commits it together with the request's write-through, or rolls both back when
    the request is no longer its own (False)."""
    return _record_outcome(session.connection(), request_id, claimant, _outcome_values(status, result, error))


@lru_cache(maxsize=None)
def _outcome_statement(columns: frozenset[str]):
    """The update that records an outcome setting ``columns``, if the request is still the claimant's; built once
    for each set of columns (an outcome sets 3 to 5 of them)."""
    return update(_REQUESTS).where(
        _REQUESTS.c.id == bindparam("request_id"), _REQUESTS.c.status == _RUNNING,
        _REQUESTS.c.claimed_by == bindparam("claimant"),
    ).values({name: bindparam(f"new_{name}", type_=_REQUESTS.c[name].type) for name in sorted(columns)})


def _record_outcome(connection, request_id: str, claimant: str, values: dict[str, Any]) -> bool:
    outcome = connection.execute(_outcome_statement(frozenset(values)),
                                 {"request_id": request_id, "claimant": claimant,
                                  **{f"new_{name}": value for name, value in values.items()}})
    return outcome.rowcount == 1


def due_for_relay(engine: Engine, *, relay_after: timedelta, lease: timedelta) -> list[str]:
    """Requests whose message was lost: pending and not enqueued lately, or running past their lease.
    Their ``enqueued_at`` is bumped so that the next relay run leaves them alone for a while."""
    now = utcnow()
    with Session(engine) as session:
        not_enqueued_lately = or_(col(ProvisioningRequest.enqueued_at).is_(None),
                                  col(ProvisioningRequest.enqueued_at) < now - relay_after)
        ids = list(session.execute(select(col(ProvisioningRequest.id)).where(or_(
            (col(ProvisioningRequest.status) == _PENDING) & not_enqueued_lately,
            (col(ProvisioningRequest.status) == _RUNNING) & (col(ProvisioningRequest.started_at) < now - lease)
            & not_enqueued_lately,
        )).limit(1000)).scalars())
        if ids:
            session.execute(update(ProvisioningRequest).where(col(ProvisioningRequest.id).in_(ids))
                            .values(enqueued_at=now))
            session.commit()
        return ids


def retry(engine: Engine, request_id: str, retried_by: str) -> dict[str, Any]:
    """Put a failed request back to pending, with a fresh count of attempts, and record who retried it
    (``retried_by``: the entry point's principal, ``cli:<login>`` or ``token:<name>``) in the same transaction."""
    with Session(engine) as session:
        row = session.get(ProvisioningRequest, request_id)
        if row is None:
            raise LookupError(f"no provisioning request {request_id!r}")
        if row.status != RequestStatus.FAILED:  # running -> pending is a worker's move, not an operator's
            raise ValueError(f"request {request_id} {state(row.status)}; only a failed request can be retried")
        retried = REQUESTS.move(RequestStatus.FAILED, _PENDING)
        now = utcnow()
        moved = session.execute(update(ProvisioningRequest).where(
            col(ProvisioningRequest.id) == request_id, col(ProvisioningRequest.status) == RequestStatus.FAILED).values(
            status=retried, attempts=0, last_error=None, finished_at=None, updated_at=now, enqueued_at=now))
        # A retry racing this one may have moved it first: theirs is the one recorded.
        if moved.rowcount == 1:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
            session.add(ProvisioningRetry(request_id=request_id, retried_by=retried_by[:MAX_TEXT],
                                          retried_at=now))
        session.commit()
        session.refresh(row)
        return view(row)


#: The shortest prefix of a request id that names it (as git takes a commit's).
MIN_ID_PREFIX = 8


def full_id(engine: Engine, ref: str) -> str:
    """The id of the one request whose id is ``ref`` or, given ``MIN_ID_PREFIX`` characters or more, begins with
    it (case-insensitively: ids are lowercase hex); LookupError naming the problem otherwise."""
    text = ref.strip().lower()
    with Session(engine) as session:
        if session.get(ProvisioningRequest, ref) is not None:
            return ref
        if len(text) < MIN_ID_PREFIX:
            raise LookupError(f"no provisioning request {ref!r} (give its id, or {MIN_ID_PREFIX} or more of its "
                              "first characters)")
        found = list(session.execute(select(col(ProvisioningRequest.id)).where(
            col(ProvisioningRequest.id).startswith(text, autoescape=True)).order_by(col(ProvisioningRequest.id))
            .limit(5)).scalars())
    if not found:
        raise LookupError(f"no provisioning request {ref!r}")
    if len(found) > 1:
        raise LookupError(f"{ref!r} begins the ids of several requests ({', '.join(found)}"
                          f"{', …' if len(found) == 5 else ''}); give more of it")
    return found[0]


def get(engine: Engine, request_id: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.get(ProvisioningRequest, request_id)
        return view(row) if row else None


def listing(engine: Engine, *, status: RequestStatus | None = None, connector: str | None = None,
            action: str | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
    """Requests, newest first: at most ``limit`` (all when None)."""
    with Session(engine) as session:
        query = select(ProvisioningRequest)
        if status:
            query = query.where(col(ProvisioningRequest.status) == status)
        if connector:
            query = query.where(col(ProvisioningRequest.connector) == connector)
        if action:
            query = query.where(col(ProvisioningRequest.action) == action)
        rows = session.execute(query.order_by(col(ProvisioningRequest.created_at).desc()).limit(limit)).scalars()
        return [view(row) for row in rows]


def connector_names(engine: Engine) -> list[str]:
    """Every connector some request names (configured or not any more)."""
    with Session(engine) as session:
        return list(session.execute(select(col(ProvisioningRequest.connector)).distinct()).scalars())


def broker_requester(claimed: Any) -> str:
    """``requested_by`` for what a broker message claims to be its requester (``broker:unknown`` if nothing)."""
    claim = claimed if isinstance(claimed, str) and claimed else "unknown"
    return f"{BROKER_REQUESTER_PREFIX}{claim}"[:MAX_TEXT]


def propose_from_broker(engine: Engine, settings: Settings, *, connector: str, action: str, params: Any,
                        idempotency_key: str, claimed_requester: str | None) -> Accepted:
    """Record a request that a broker message asks for: it always awaits approval (at least one approver, more if
    the connector's rules ask), never ``pending`` straight away.

    Anyone who can write to the broker can send the message, and it names nobody who can be checked, so it may
    propose a change but never grant one: an authenticated principal (a token with ``approve:<connector>``, a CLI
    user) releases it. Its requester is ``broker:<claim>``, which no principal's name equals, so every proposal
    needs an approver other than whoever sent it. Logged (ids, never parameters: they name people and groups).
    """
    accepted = accept(engine, settings, connector=connector, action=action, params=params,
                      idempotency_key=idempotency_key, requested_by=broker_requester(claimed_requester),
                      approval_floor=1)
    log.warning("provisioning request proposed over the broker; it waits for an approver",
                extra={"request_id": accepted.request["id"], "connector": connector, "action": action,
                       "claimed_requester": claimed_requester, "status": accepted.request["status"]})
    return accepted


def reject_from_broker(engine: Engine, message: Any, reason: str) -> dict[str, Any]:
    """Record a broker message that is not a request at all, its claimed requester labelled as a claim."""
    body = message if isinstance(message, dict) else {}
    return accept_malformed(engine, {**body, "requested_by": broker_requester(body.get("requested_by"))}, reason)


def accept_malformed(engine: Engine, message: Any, reason: str, *,
                     on_behalf_of: str | None = None) -> dict[str, Any]:
    """Record a message that is not a request at all, so that its sender can find out why."""
    body = message if isinstance(message, dict) else {}
    connector, action, requested_by = body.get("connector"), body.get("action"), body.get("requested_by")
    with Session(engine) as session:
        return _reject(session, connector=connector if isinstance(connector, str) else "(unknown)",
                       action=action if isinstance(action, str) else "(unknown)", params=body.get("params"),
                       key=None, requested_by=requested_by if isinstance(requested_by, str) else None,
                       on_behalf_of=on_behalf_of, reason=reason).request
