"""Who is calling: the bearer token of every request (but ``/healthz``) is checked against ``api_tokens``, and
each route asks the resulting principal for the scope it needs.

401 (with ``WWW-Authenticate: Bearer``) when there is no token or it is malformed, unknown, revoked or expired;
the body says which, and never echoes what was presented. 403 names the scope that is missing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from auth.scopes import Principal, Verb
from auth.tokens import TokenRefused, authenticate
from httpapi.errors import ApiError
from worker import runtime

#: Declares the scheme in the OpenAPI document; the header is read (and refused) below, in one shape.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token: `jumpsync tokens create NAME --scope ...`.")

REALM = 'Bearer realm="jumpsync"'

_MESSAGES = {
    "missing": "no bearer token: send Authorization: Bearer <token> (jumpsync tokens create)",
    "malformed": "the bearer token is not a jumpsync API token (jst_<id>_<secret>)",
    "unknown": "the bearer token is not known (wrong secret, or its token was deleted)",
    "revoked": "the bearer token was revoked",
    "expired": "the bearer token has expired",
}


def unauthorized(reason: str) -> ApiError:
    header = REALM if reason == "missing" else f'{REALM}, error="invalid_token", error_description="token {reason}"'
    return ApiError(401, "unauthorized", _MESSAGES[reason], reason=reason, headers={"WWW-Authenticate": header})


def _presented(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("missing")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("malformed")
    return token.strip()


def principal(request: Request, _declared: Annotated[object, Depends(bearer_scheme)] = None) -> Principal:
    """The caller, from its bearer token."""
    presented = _presented(request)
    try:
        return authenticate(runtime.engine(), presented)
    except TokenRefused as exc:
        raise unauthorized(str(exc.reason.value)) from None


Caller = Annotated[Principal, Depends(principal)]


def forbidden(scope: str) -> ApiError:
    return ApiError(403, "forbidden", f"this token lacks the scope {scope}", missing_scope=scope)


def require(caller: Principal, verb: Verb, connector: str, action: str | None = None) -> None:
    """403 unless ``caller`` holds ``verb`` on ``connector`` (and ``action``, for provision)."""
    if not caller.may(verb, connector, action):
        raise forbidden(":".join(part for part in (str(verb), connector, action) if part))
