"""Every error the API answers with is one JSON shape, ``{"error": {"code", "message", ...}}``, that names the
problem: a refused token, a missing scope, an unknown id or name, a body or query that does not validate.

Route code raises ``ApiError``; FastAPI's own validation errors and Starlette's 404/405 are rewritten to the
same shape, so a client parses one thing. A presented token is never echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from httpapi.schemas import ErrorBody, ErrorDetail, Problem


class ApiError(Exception):
    """An answer other than success: its HTTP status, a stable ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details

    def body(self) -> dict[str, Any]:
        detail = ErrorDetail(code=self.code, message=self.message, **self.details)
        return ErrorBody(error=detail).model_dump(mode="json", exclude_none=True)


def not_found(message: str, **details: Any) -> ApiError:
    return ApiError(404, "not_found", message, **details)


def invalid(message: str, **details: Any) -> ApiError:
    """A usage error: refused before anything is written."""
    return ApiError(422, "invalid_request", message, **details)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _problem_message(error: dict[str, Any]) -> str:
    if error.get("type") == "missing":
        return "is required"
    if error.get("type") == "extra_forbidden":
        if list(error.get("loc", ()))[-1:] == ["requested_by"]:
            return "is not accepted: the token says who asks (use on_behalf_of for whom)"
        return "is not a field of this request"
    return str(error.get("msg", "is not valid")).removeprefix("Value error, ")


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [Problem(location=_location(e.get("loc", ())), message=_problem_message(e)) for e in exc.errors()]
    message = "; ".join(f"{p.location} {p.message}" for p in problems) or "the request is not valid"
    return await _api_error(_request, invalid(message, problems=problems))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # 400: a body that is not text (FastAPI's own check; JSON that does not parse is a 422 like the rest).
    code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return await _api_error(_request, ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers))


def install(app: FastAPI) -> None:
    """Answer every error in the one JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
