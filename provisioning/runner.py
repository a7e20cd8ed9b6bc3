"""Running one claimed request: resolve, apply, record. Plain functions; the Celery task only calls them.

Outcomes: ``succeeded``; ``rejected`` (invalid, unknown or ambiguous name, refused by policy: it can never
succeed as given); ``failed`` at once on a permanent API error (400, 401/403, 404, 409 that is not "already
so"); and on transient trouble (429, 5xx, network, database) back to ``pending`` with a delay, until the
connector's ``provisioning.max_attempts``, then ``failed`` with the last reason.

Requests run on the process's event loop with its cached client per connector (``provisioning.clients``), and a
connector is registered in the database once per process: what a request pays for is its own work.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from jumpcloud.errors import BadResponseError, JumpCloudError, RateLimitedError, ServerError, TransportError
from pipeline.parts import describe_error
from pipeline.runs import register_connector
from provisioning import requests
from provisioning.actions import ACTIONS, ActionContext
from provisioning.clients import ProcessClients, for_process
from provisioning.params import InvalidRequest, validate_params
from provisioning.resolve import Resolver
from provisioning.writethrough import WriteThrough
from telemetry import metrics
from worker.settings import ConfigError, ConnectorConfig, Settings, parse_duration

log = logging.getLogger(__name__)

TRANSIENT = (RateLimitedError, ServerError, TransportError, BadResponseError, OperationalError, TimeoutError)


@dataclass(frozen=True)
class Execution:
    status: str | None            # None: not claimed (done already, or owned by another worker)
    retry_in: float | None = None  # seconds, when the request went back to pending


def backoff(attempt: int) -> float:
    return min(60.0, 2.0 ** attempt) * (0.5 + random.random() / 2)


_registered: WeakKeyDictionary[Engine, dict[tuple, int]] = WeakKeyDictionary()


def connector_id(engine: Engine, connector: ConnectorConfig) -> int:
    """The connector's row id, registering it (``register_connector``) the first time this process sees the
    connector with this URL and org on this database: rows are never deleted, and a changed URL or org is
    another key, so it is registered again."""
    known = _registered.setdefault(engine, {})
    key = (connector.name, connector.base_url, connector.org_id)
    if key not in known:
        with Session(engine) as session:
            known[key] = register_connector(session, connector)
    return known[key]


async def _run(engine: Engine, settings: Settings, row, clients: ProcessClients) -> dict:
    connector = settings.file.connector(row.connector)
    params = validate_params(row.action, row.params)
    if row.action not in connector.provisioning.allowed_actions:  # the policy may have changed since
        raise InvalidRequest(f"action {row.action} is no longer allowed for connector {row.connector!r}")
    cid = connector_id(engine, connector)
    client = None if row.dry_run else await clients.client(connector, settings.broker_url)
    ctx = ActionContext(client=client, resolve=Resolver(engine, cid, client), write=WriteThrough(engine, cid, row.id))
    outcome = await ACTIONS[row.action](ctx, params)
    return outcome.as_result(row.dry_run)


def execute(engine: Engine, settings: Settings, request_id: str, claimant: str,
            clients: ProcessClients | None = None) -> Execution:
    """Claim the request and run it; ``clients`` defaults to this process's loop and clients."""
    lease = parse_duration(settings.file.provisioning.lease)
    row = requests.claim(engine, request_id, claimant, lease)
    if row is None:
        return Execution(None)
    execution = _execute(engine, settings, row, claimant, clients or for_process())
    metrics.provisioning_outcome(row.connector, row.action, execution.status)
    return execution


def _execute(engine: Engine, settings: Settings, row, claimant: str, clients: ProcessClients) -> Execution:
    request_id = row.id
    context = {"request_id": request_id, "connector": row.connector, "action": row.action}
    try:
        result = clients.run(lambda: _run(engine, settings, row, clients))
    except (InvalidRequest, ConfigError) as exc:
        requests.finish(engine, request_id, claimant, status="rejected", error=str(exc))
        log.info("provisioning request rejected", extra={**context, "error": str(exc)})
        return Execution("rejected")
    except TRANSIENT as exc:
        try:
            max_attempts = settings.file.connector(row.connector).provisioning.max_attempts
        except ConfigError:
            max_attempts = 1
        if row.attempts >= max_attempts:
            error = f"gave up after {row.attempts} attempts: {describe_error(exc)}"
            requests.finish(engine, request_id, claimant, status="failed", error=error)
            return Execution("failed")
        requests.finish(engine, request_id, claimant, status="pending", error=describe_error(exc))
        return Execution("pending", retry_in=backoff(row.attempts))
    except JumpCloudError as exc:
        requests.finish(engine, request_id, claimant, status="failed", error=describe_error(exc))
        log.warning("provisioning request failed", extra={**context, "error": describe_error(exc)})
        return Execution("failed")
    except Exception as exc:  # noqa: BLE001  (a bug must not leave the request running forever)
        log.exception("provisioning request failed unexpectedly", extra=context)
        requests.finish(engine, request_id, claimant, status="failed", error=describe_error(exc))
        return Execution("failed")
    requests.finish(engine, request_id, claimant, status="succeeded", result=result)
    return Execution("succeeded")
