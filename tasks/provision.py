"""Provisioning tasks, on the ``provisioning`` queue. Thin: they call ``provisioning.*``.

For services that do not import jumpsync, ``jumpsync.provision.submit`` takes JSON kwargs::

    {"connector": "acme", "action": "group.add-member",
     "params": {"group": "Engineering", "user": "alice@example.com"},
     "idempotency_key": "ticket-4711",          # optional; defaults to the Celery task id
     "requested_by": "servicedesk"}             # optional: a claim, recorded as "broker:servicedesk"

A broker message authenticates nobody, so the request it records always awaits an approver's decision
(``provisioning.requests.propose_from_broker``); ``jumpsync.provision`` applies only requests the database
holds as pending. A malformed message is recorded as a ``rejected`` request with the reason; it never raises,
so it is never retried and never takes a worker down.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.settings import parse_duration
from jumpsync.api import enqueue
from provisioning import approvals, requests, runner
from worker import runtime
from worker.names import TaskName
from worker.retries import ON_DATABASE_ERRORS


class SubmitMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connector: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    requested_by: str | None = Field(default=None, max_length=256)


@shared_task(name=TaskName.PROVISION_SUBMIT, bind=True)
def provision_submit(self, *args: Any, **kwargs: Any) -> dict:
    """Validate and record a request from any Celery client; it waits for an approver (it is not enqueued)."""
    engine = runtime.engine()
    try:
        if args:
            raise ValueError(f"takes keyword arguments only, got {len(args)} positional")
        message = SubmitMessage.model_validate(kwargs)
    except (ValidationError, ValueError) as exc:
        reason = f"malformed {self.name} message: {exc}".replace("\n", "; ")[:2000]
        rejected = requests.reject_from_broker(engine, kwargs, reason)
        return {"id": rejected["id"], "status": rejected["status"], "error": reason}
    accepted = requests.propose_from_broker(
        engine, runtime.settings_for(message.connector), connector=message.connector, action=message.action,
        params=message.params, claimed_requester=message.requested_by,
        idempotency_key=message.idempotency_key or f"celery-task:{self.request.id}")
    return {"id": accepted.request["id"], "status": accepted.request["status"]}


@shared_task(name=TaskName.PROVISION_APPLY, bind=True, **ON_DATABASE_ERRORS)
def provision_apply(self, request_id: str) -> dict:
    """Apply one recorded request to JumpCloud; on transient trouble, come back later."""
    execution = runner.execute(runtime.engine(), runtime.settings(), request_id, self.request.id,
                               settings_for=runtime.settings_for)
    if execution.retry_in is not None:
        provision_apply.apply_async(args=[request_id], countdown=execution.retry_in)
    if execution.next_request is not None:  # the next request on the same target (provisioning.ordering)
        enqueue(execution.next_request)
    return {"request_id": request_id, "status": execution.status}


@shared_task(name=TaskName.PROVISION_RELAY)
def provision_relay() -> dict:
    """Enqueue again the requests whose message was lost (pending too long, or running past their lease)."""
    config = runtime.settings().file.provisioning
    ids = requests.due_for_relay(runtime.engine(), relay_after=parse_duration(config.relay_after),
                                 lease=parse_duration(config.lease))
    for request_id in ids:
        enqueue(request_id)
    return {"relayed": len(ids)}


@shared_task(name=TaskName.PROVISION_EXPIRE)
def provision_expire() -> dict:
    """End the requests that awaited approval longer than their connector's ``approval_expires``."""
    expired = approvals.expire_due(runtime.engine())
    return {"expired": len(expired)}

