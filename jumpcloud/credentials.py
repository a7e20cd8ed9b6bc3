"""The API key and the org id: checked before they go in a header, and never shown.

httpx would raise a ``UnicodeEncodeError`` carrying the whole header value for a key it cannot encode, and
``httpx.Headers`` masks only ``Authorization`` in its repr: so the key is checked here without being echoed,
added per request by ``ApiKeyAuth`` rather than held in the client's headers, and scrubbed from any text a
server or a library sends back.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

__all__ = ["ApiKeyAuth", "check_api_key", "check_org_header", "scrub"]


class ApiKeyAuth(httpx.Auth):
    """Adds ``x-api-key`` per request.

    Kept out of the client's default headers so that no long-lived object
    whose repr shows headers (``httpx.Headers`` only masks Authorization)
    holds the key, and so that its own repr never shows it.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._key
        yield request

    def __repr__(self) -> str:
        return "ApiKeyAuth(<redacted>)"


def check_api_key(api_key: str) -> str:
    """The key, stripped; refused without ever echoing it when it cannot go in an HTTP header."""
    if not isinstance(api_key, str):
        raise TypeError("api_key must be a str")
    key = api_key.strip()  # a trailing newline from a secrets file is common
    if not key:
        raise ValueError("api_key is empty")
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ValueError("api_key contains characters that cannot go in an HTTP header")
    return key


def check_org_header(org_id: str | None) -> str | None:
    """The ``x-org-id`` value, stripped, or None for a single-tenant key; refused when it cannot go in a header."""
    if org_id is None:
        return None
    if not isinstance(org_id, str) or not org_id.strip():
        raise ValueError("org_id must be a non-empty string or None")
    org_id = org_id.strip()
    if not org_id.isascii() or not org_id.isprintable():
        raise ValueError(f"org_id {org_id!r} cannot go in an HTTP header")
    return org_id


def scrub(text: str, key: str) -> str:
    """``text`` with every occurrence of ``key`` redacted: belt and braces, should a server or a library echo it."""
    if key and key in text:
        text = text.replace(key, "<redacted>")
    return text
