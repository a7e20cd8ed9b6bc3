"""The API's request bodies and answers as pydantic models: what FastAPI validates and what the OpenAPI document
(docs/openapi.json) describes.

A request is answered in the shape of ``provisioning.requests.view`` (the CLI's ``--json`` and the Python
interface show the same), the read-only views in the shapes of ``jumpsync status --json``,
``jumpsync access --json`` and ``jumpsync who-has --json`` (docs/cli-json.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from config.actions import ACTION_NAMES, MAX_TEXT
from config.names import name_key
from models.states import RequestStatus
from provisioning.audit import AuditKind

#: An action's name, as the body and the filters take it.
Action = Literal[ACTION_NAMES]  # type: ignore[valid-type]  # (the tuple of names, one Literal per action)

#: Idempotency keys and on_behalf_of, as the database stores them.
#: A connector's name (config.values.check_name), in any case: ``ACME`` is ``acme``, as in every command.
CONNECTOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


def _connector_key(value: str | None) -> str | None:
    """A connector name as typed, as the name it is (``config.names.name_key``; connector names are lowercase)."""
    return None if value is None else name_key(value)


#: Reads a connector name in a body, a path or a query as the name it is.
ConnectorKey = AfterValidator(_connector_key)
#: Text the API takes: no control characters (PostgreSQL refuses NUL in text; none belongs in a name or key).
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"

ParamText = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=PRINTABLE)]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]


class SubmitRequest(BaseModel):
    """A provisioning request. Who asks is the token (``requested_by``); ``on_behalf_of`` records for whom."""

    model_config = ConfigDict(extra="forbid")

    connector: Annotated[str, ConnectorKey] = Field(pattern=CONNECTOR_PATTERN, description="The connector's name.")
    action: Action = Field(description="The access change.")
    params: dict[ParamName, ParamText] = Field(default_factory=dict, max_length=32,
                                   description="The action's parameters (docs/provisioning.md), e.g. "
                                               "{\"group\": \"Engineering\", \"user\": \"alice@example.com\"}.")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_TEXT, pattern=PRINTABLE,
        description="The same key again (for this connector) gives the same request, not a second one; "
                    "shared with `jumpsync provision --idempotency-key` and the Python interface.")
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT, pattern=PRINTABLE,
                                     description="Whom a ticketing system or portal asks for (recorded apart from "
                                                 "requested_by, which is the token).")
    dry_run: bool = Field(default=False, description="Resolve and record, change nothing in JumpCloud (a "
                                                     "connector whose policy is dry_run is always a dry run).")


class RequestView(BaseModel):
    """A provisioning request as recorded (``provisioning.requests.view``)."""

    id: str
    connector: str
    action: str
    params: dict[str, Any]
    idempotency_key: str | None
    requested_by: str | None
    on_behalf_of: str | None = None
    status: RequestStatus
    dry_run: bool
    attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None


class DecisionView(BaseModel):
    """One approver's decision (``provisioning.approvals.decision_view``)."""

    decision: str
    decided_by: str
    decided_at: str | None
    comment: str | None


class RequestDetail(RequestView):
    """A request with its approval, for a request that needed one (``provisioning.approvals.detail``): how many
    approvers, until when, and every decision in order. Left out for a request that needed none."""

    approvals_required: int | None = None
    approval_expires_at: str | None = None
    decisions: list[DecisionView] | None = None


class AuditEventView(BaseModel):
    """One event of the provisioning audit trail (``provisioning.audit.AuditEvent``)."""

    at: str = Field(description="When, ISO 8601 in UTC.")
    kind: AuditKind
    request_id: str
    connector: str
    action: str
    actor: str | None = Field(description="Who submitted, decided or retried; null for the workers' outcomes "
                                          "and expiry.")
    on_behalf_of: str | None
    detail: str | None = Field(description="A decision's comment, an error, or what was applied.")


class DecisionBody(BaseModel):
    """An approval or a denial; who decides is the token, never the body."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000, description="Why, for the audit trail.")


class Problem(BaseModel):
    """One field that did not validate: where (``body.params``, ``query.limit``) and what is wrong."""

    location: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable: unauthorized, forbidden, not_found, ambiguous, conflict, "
                                  "invalid_request, rejected, ...")
    message: str = Field(description="What went wrong, for people.")
    reason: Literal["missing", "malformed", "unknown", "revoked", "expired"] | None = Field(
        default=None, description="401: why the token was refused.")
    missing_scope: str | None = Field(default=None, description="403: the scope the token would need.")
    problems: list[Problem] | None = Field(default=None, description="422: each field that did not validate.")
    candidates: list[dict[str, Any]] | None = Field(
        default=None, description="404/409 of a name lookup: the closest matches, or those a name is ambiguous "
                                  "between (ask again by id).")
    request: RequestView | None = Field(default=None, description="422 rejected: the request as recorded.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    ok: bool


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's error statuses, all in the one error shape."""
    described = {400: "The body is not text (JSON must be UTF-8).",
                 401: "No, malformed, unknown, revoked or expired token (WWW-Authenticate: Bearer).",
                 403: "The token lacks the scope named in the error.", 404: "No such request, connector or name.",
                 409: "The request is not in a state that allows this, or a name is ambiguous.",
                 422: "The body or query does not validate, or the request was rejected (recorded)."}
    return {status: {"model": ErrorBody, "description": described[status]} for status in statuses}
