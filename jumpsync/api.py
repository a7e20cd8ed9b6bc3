"""The Python entry point: submit a provisioning request and, if asked, wait for its outcome.

    from jumpsync.api import submit_request
    request = submit_request("acme", "group.add-member", {"group": "Engineering", "user": "alice@example.com"},
                             idempotency_key="ticket-4711", on_behalf_of="alice@example.com", wait=True)
    request["status"]  # "succeeded", "failed" or "rejected"; request["last_error"] says why

A connector name is matched case-insensitively (``ACME`` is ``acme``), as by every command. A usage error is
raised and nothing is recorded: ``config.settings.ConfigError`` for an unknown connector (its message offers the
closest), ``provisioning.params.InvalidRequest`` for an unknown action or parameters that do not fit it. Only a
well-formed request that the connector's policy refuses is recorded, as ``rejected``.

With ``wait=True``, an apply task that fails before the request ends raises ``worker.waiting.TaskFailed`` with
the task's error, at once rather than at the timeout.

``requested_by`` is recorded as ``python:<OS login>``: the caller says on whose behalf it asks
(``on_behalf_of``), not who it is.

The request is recorded in the database before its message is sent; if the broker cannot be reached, it stays
``pending`` and the relay sends it later, so a request accepted here is never lost.
"""

from __future__ import annotations

import logging
from typing import Any

from auth.local import python_requester
from models.states import ENDED_REQUEST_STATUSES, RequestStatus
from provisioning import approvals, requests
from worker import runtime, waiting
from worker.names import TaskName

log = logging.getLogger(__name__)


def enqueue(request_id: str, *, keep_result: bool = False) -> str | None:
    """Send the apply message; its task id, or None (and the request left for the relay) when the broker is
    unreachable. ``keep_result`` for a caller that waits (``--wait``): the task's state is then kept, so that
    the wait sees the task fail (``worker.waiting``); storing it costs the worker two Redis writes and a read a
    request, so no other sender asks for it."""
    # A short publish retry: a broker that is down must not hold the caller for kombu's default connect
    # timeout (seconds per request); the request is already recorded and the relay will send it.
    retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
    try:
        return waiting.send(TaskName.PROVISION_APPLY, request_id, retry_policy=retry_policy, keep_result=keep_result)
    except Exception as exc:  # noqa: BLE001  (kombu raises several kinds; all mean "not sent now")
        log.warning("could not enqueue provisioning request %s (the relay will): %s", request_id, exc)
        return None


def submit_request(connector: str, action: str, params: dict[str, Any], *, idempotency_key: str | None = None,
                   on_behalf_of: str | None = None, dry_run: bool = False, wait: bool = False,
                   timeout: float = 120.0) -> dict[str, Any]:
    """Record a request (or find the one with this idempotency key), enqueue it, optionally wait for it.
    ``requested_by`` is ``python:<OS login>``; ``dry_run`` asks for a dry run even where the connector's policy
    applies changes."""
    return submit_as(python_requester(), connector, action, params, idempotency_key=idempotency_key,
                     on_behalf_of=on_behalf_of, dry_run=dry_run, wait=wait, timeout=timeout)


def submit_as(requester: str, connector: str, action: str, params: dict[str, Any], *,
              idempotency_key: str | None = None, on_behalf_of: str | None = None, dry_run: bool = False,
              wait: bool = False, timeout: float = 120.0) -> dict[str, Any]:
    """``submit_request`` for an entry point that knows its caller and records it as ``requester``
    (the CLI: ``cli:<OS login>``; the HTTP API: ``token:<name>``); never a name the caller typed.

    A usage error is raised before anything is written (``requests.check_submission``): ConfigError for an unknown
    connector, InvalidRequest for an unknown action or parameters that do not fit it."""
    settings = runtime.settings()
    connector = requests.check_submission(settings, connector, action, params)
    accepted = requests.accept(runtime.engine(), settings, connector=connector, action=action,
                               params=params, idempotency_key=idempotency_key, requested_by=requester,
                               on_behalf_of=on_behalf_of, dry_run=dry_run)
    task_id = enqueue(accepted.request["id"], keep_result=wait) if accepted.enqueue else None
    if wait:
        return wait_for_request(accepted.request["id"], timeout, task_id=task_id)
    return accepted.request


def wait_for_request(request_id: str, timeout: float = 120.0, *, task_id: str | None = None) -> dict[str, Any]:
    """Poll until the request has ended, or waits for approvers (people, not workers: no use polling for them);
    returns it as it is when the timeout runs out. ``task_id``, the apply message sent for it: if that task
    fails before the request ends, ``worker.waiting.TaskFailed`` says why, within a poll."""
    def settled() -> dict[str, Any] | None:
        current = requests.get(runtime.engine(), request_id)
        if current is None:
            raise LookupError(f"no provisioning request {request_id!r}")
        ended = current["status"] in ENDED_REQUEST_STATUSES or current["status"] == RequestStatus.AWAITING_APPROVAL
        return current if ended else None

    found = waiting.wait_for(settled, task_id, timeout, poll=0.1)
    if found is not None:
        return found
    current = requests.get(runtime.engine(), request_id)
    if current is None:
        raise LookupError(f"no provisioning request {request_id!r}")
    return current


def approve_request(request_id: str, decided_by: str, comment: str | None = None) -> dict[str, Any]:
    """Record ``decided_by``'s approval (``cli:<login>``, ``token:<name>``: the entry point's principal, never
    text its caller chose); once enough approvers agreed, the request is pending and is sent to the workers
    here (by the one approval that released it). ``provisioning.approvals.ApprovalError`` names a refusal."""
    decided = approvals.approve(runtime.engine(), runtime.settings(), request_id, decided_by, comment)
    if decided["status"] == RequestStatus.PENDING:  # only the approval that moved it sees it pending
        enqueue(request_id)
    return decided


def deny_request(request_id: str, decided_by: str, comment: str | None = None) -> dict[str, Any]:
    """Record ``decided_by``'s denial: the request ends ``denied`` and is never applied."""
    return approvals.deny(runtime.engine(), runtime.settings(), request_id, decided_by, comment)

