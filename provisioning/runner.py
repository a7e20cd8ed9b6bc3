"""Running one claimed request: resolve, apply, record. Plain functions; the Celery task only calls them.

Outcomes: ``succeeded``; ``rejected`` (invalid, unknown or ambiguous name, refused by policy: it can never
succeed as given); ``failed`` at once on a permanent API error (400, 401/403, 404, 409 that is not "already
so"); and on transient trouble (429, 5xx, network, database) back to ``pending`` with a delay, until the
connector's ``provisioning.max_attempts``, then ``failed`` with the last reason.

Requests run on their thread's event loop with its cached client per connector (``provisioning.clients``), and a
connector is registered in the database once per process: what a request pays for is its own work. A request
is claimed only when none ahead of it on its account is pending or running; when it ends, the execution names
the next request on the account, for the task to send (``provisioning.ordering``).

A request uses one connection from the pool (one checkout, so one ``pool_pre_ping`` round trip on PostgreSQL):
the claim (one ``UPDATE … RETURNING`` in autocommit mode, committed before anything is sent to JumpCloud) and the
name look-ups run in autocommit mode, so no transaction is open while the request waits for JumpCloud; then one
transaction holds the write-through and the outcome, committed together. It is all or nothing:
a request recorded as succeeded has its write-through; a worker that no longer owns the request when it ends
(another took it over) keeps neither, and the owner applies and writes it again (every action is idempotent).
When the action fails, whatever it wrote is rolled back and the outcome recorded on its own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from config.settings import ConfigError, Settings, parse_duration
from connector.client_factory import describe_error
from jumpcloud.budget import BudgetUnavailableError
from jumpcloud.errors import BadResponseError, JumpCloudError, RateLimitedError, ServerError, TransportError
from models.connectors import registered_connector_id
from models.db import autocommit
from models.states import RequestStatus
from provisioning import requests
from provisioning.actions import ACTIONS, ActionContext
from provisioning.clients import ProcessClients, for_process
from provisioning.ordering import next_in_line
from provisioning.params import InvalidRequest, validate_params
from provisioning.resolve import Resolver
from provisioning.writethrough import WriteThrough
from telemetry import metrics

log = logging.getLogger(__name__)

#: Errors after which the request goes back to pending with a delay: JumpCloud busy or unreachable, its answer
#: unreadable, the database or the connector's request budget (its Redis) away for a while.
TRANSIENT = (RateLimitedError, ServerError, TransportError, BadResponseError, OperationalError, TimeoutError,
             BudgetUnavailableError)


@dataclass(frozen=True)
class Execution:
    status: RequestStatus | None  # None: not claimed (done already, owned by another worker, or behind another
                                  # request on its target), or taken over by another worker before it ended
    retry_in: float | None = None  # seconds, when the request went back to pending
    next_request: str | None = None  # the request this one handed its target to: to be sent now


def backoff(attempt: int) -> float:
    return min(60.0, 2.0 ** attempt) * (0.5 + random.random() / 2)


async def _run(engine: Engine, connection: Connection, session: Session, settings: Settings, row,
               clients: ProcessClients) -> dict:
    connector = settings.connector(row.connector)
    params = validate_params(row.action, row.params)
    if row.action not in connector.provisioning.allowed_actions:  # the policy may have changed since
        raise InvalidRequest(f"action {row.action} is no longer allowed for connector {row.connector!r}")
    cid = registered_connector_id(engine, connector)
    client = None if row.dry_run else await clients.client(connector, settings.broker_url)
    resolve = Resolver(connection, cid, client)  # look-ups in autocommit: no transaction open during the API call
    resolve.prefetch_ids(params)
    ctx = ActionContext(client=client, resolve=resolve, write=WriteThrough(session, cid, row.id))
    outcome = await ACTIONS[row.action](ctx, params)
    return outcome.as_result(row.dry_run)


def execute(engine: Engine, settings: Settings, request_id: str, claimant: str,
            clients: ProcessClients | None = None, *,
            settings_for: Callable[[str], Settings] | None = None) -> Execution:
    """Claim the request and run it; ``clients`` defaults to this process's loop and clients. ``settings_for``
    gives the settings that know the claimed request's connector (the worker's: a connector discovered a
    moment ago may not be in ``settings`` yet)."""
    lease = parse_duration(settings.file.provisioning.lease)
    with engine.connect() as connection:  # one checkout (and one pre-ping) for the whole request
        row = requests.claim_on(connection, request_id, claimant, lease)
        if row is None:
            _not_claimed(engine, request_id)
            return Execution(None)
        if settings_for is not None:
            settings = settings_for(row.connector)
        with Session(bind=connection) as session:  # its commits and rollbacks keep the connection
            execution = _execute(engine, connection, session, settings, row, claimant, clients or for_process())
        if execution.status is not None:  # the target is free: the first request waiting on it goes next
            with autocommit(connection):
                following = next_in_line(connection, row.connector, row.target_key, row.id)
            execution = replace(execution, next_request=following)
    if execution.status is not None:
        metrics.provisioning_outcome(row.connector, row.action, execution.status)
    return execution


#: States no apply message is ever sent for: a message naming such a request (or no request) was not sent by
#: jumpsync, and applies nothing. Other unclaimable states are a redelivery's or a relay's ordinary leftovers.
_NEVER_SENT = frozenset({RequestStatus.AWAITING_APPROVAL, RequestStatus.DENIED, RequestStatus.EXPIRED,
                         RequestStatus.REJECTED})


def _not_claimed(engine: Engine, request_id: str) -> None:
    """Log an apply message that named a request not pending (nor ours to run again)."""
    found = requests.get(engine, request_id)
    if found is not None and found["status"] == RequestStatus.PENDING:
        log.info("request waits for another request on its target; it goes when that one ends",
                 extra={"request_id": request_id, "connector": found["connector"]})
    elif found is None or found["status"] in _NEVER_SENT:
        log.warning("apply message for a request that is not pending; nothing applied",
                    extra={"request_id": request_id, "status": found["status"] if found else "unknown id",
                           "connector": found["connector"] if found else None})
    else:
        log.info("apply message for a request already taken; nothing to do",
                 extra={"request_id": request_id, "status": found["status"]})


def _transient(settings: Settings, row, exc: BaseException) -> tuple[RequestStatus, str, float | None]:
    """Back to pending with a delay, or failed once the connector's attempts are spent."""
    try:
        max_attempts = settings.connector(row.connector).provisioning.max_attempts
    except ConfigError:
        max_attempts = 1
    if row.attempts >= max_attempts:
        return RequestStatus.FAILED, f"gave up after {row.attempts} attempts: {describe_error(exc)}", None
    return RequestStatus.PENDING, describe_error(exc), backoff(row.attempts)


def _finish(session: Session, row, claimant: str, *, status: RequestStatus, result: dict | None = None,
            error: str | None = None) -> bool:
    """Record the outcome and commit it with what the request wrote; or, if the request is no longer ours
    (another worker took it over once its lease ran out), roll both back and return False."""
    if requests.finish_in(session, row.id, claimant, status=status, result=result, error=error):
        session.commit()
        return True
    session.rollback()
    log.warning("provisioning request taken over by another worker; its outcome is the new owner's",
                extra={"request_id": row.id, "connector": row.connector, "action": row.action})
    return False


def _execute(engine: Engine, connection: Connection, session: Session, settings: Settings, row, claimant: str,
             clients: ProcessClients) -> Execution:
    context = {"request_id": row.id, "connector": row.connector, "action": row.action}
    try:
        result = clients.run(lambda: _run(engine, connection, session, settings, row, clients))
        try:
            owned = _finish(session, row, claimant, status=RequestStatus.SUCCEEDED, result=result)
            return Execution(RequestStatus.SUCCEEDED if owned else None)
        except OperationalError as exc:  # the database, at the commit: the change is in JumpCloud, not here yet
            session.rollback()
            status, error, retry_in = _transient(settings, row, exc)
    except (InvalidRequest, ConfigError) as exc:
        session.rollback()
        log.info("provisioning request rejected", extra={**context, "error": str(exc)})
        status, error, retry_in = RequestStatus.REJECTED, str(exc), None
    except TRANSIENT as exc:
        session.rollback()
        status, error, retry_in = _transient(settings, row, exc)
    except JumpCloudError as exc:
        session.rollback()
        log.warning("provisioning request failed", extra={**context, "error": describe_error(exc)})
        status, error, retry_in = RequestStatus.FAILED, describe_error(exc), None
    except Exception as exc:  # a bug must not leave the request running forever
        session.rollback()
        log.exception("provisioning request failed unexpectedly", extra=context)
        status, error, retry_in = RequestStatus.FAILED, describe_error(exc), None
    if not _finish(session, row, claimant, status=status, error=error):
        return Execution(None)
    return Execution(status, retry_in=retry_in)
