"""A failed attempt as a ``jumpcloud.errors`` error, holding nothing that leads back to the API key.

``errors`` itself knows nothing of httpx; this is where an httpx response or transport failure becomes one
of its errors: the server's message (scrubbed of the key), and for a transport failure a cause that is a
copy of the httpx error, never the original with its request and headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from . import errors

__all__ = ["error_message", "response_error", "transport_error"]


def error_message(response: httpx.Response, scrub: Callable[[str], str]) -> str:
    """JumpCloud's error text: ``message`` (reliably present), else
    ``error``, else the start of the body."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    message: Any = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
    if message is None:
        try:
            message = response.text.strip()[:200]
        except Exception:  # noqa: BLE001  an undecodable body has no message to show
            message = ""
    return scrub(str(message).strip())


def transport_error(
    failure: httpx.RequestError, method: str, where: str, attempts: int, scrub: Callable[[str], str]
) -> errors.TransportError:
    """A TransportError whose cause is a *copy* of the httpx error.

    The original holds the ``httpx.Request`` (and so the key in its
    headers) and a chain of transport/OS exceptions; the copy keeps only
    the class and message, which is what a traceback shows anyway. The
    caller raises it outside any ``except`` block, so no implicit
    ``__context__`` points back at the original either.
    """
    text = scrub(str(failure))
    name = type(failure).__name__
    message = f"{name}: {text}" if text else name
    error = errors.TransportError(None, method, where, message, attempts=attempts)
    try:
        cause: BaseException | None = type(failure)(text)
    except Exception:  # noqa: BLE001  an exception type that takes other arguments: no cause, the message stays
        cause = None
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error


def response_error(
    response: httpx.Response, method: str, where: str, attempts: int, scrub: Callable[[str], str]
) -> errors.JumpCloudError:
    """The error for a response that is not 2xx: a redirect (never followed: it could carry the key to another
    host) is a BadResponseError naming where it pointed, any other status its ``error_for_status`` class."""
    status = response.status_code
    if 300 <= status <= 399:
        location = scrub(response.headers.get("location", "?"))
        return errors.BadResponseError(status, method, where, f"unexpected redirect to {location}")
    return errors.error_for_status(status, method, where, error_message(response, scrub), attempts=attempts)
