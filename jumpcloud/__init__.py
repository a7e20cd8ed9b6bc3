"""JumpCloud API client for jumpsync.

The package knows JumpCloud's HTTP conventions (auth headers, the v1 envelope
and v2 bare-array listings, retries) and nothing about our database; the
connectors name endpoints and map records. See docs/architecture.md for the
contract other packages code against.

The names below are loaded on first use: importing a light module of the
package (``jumpcloud.ids``, ``jumpcloud.errors``) must not load httpx, which
the commands that only read the database never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import errors
    from .client import MAX_PAGE_SIZE, ClientStats, JumpCloudClient
    from .errors import (
        AuthError,
        BadRequestError,
        BadResponseError,
        ConflictError,
        JumpCloudError,
        NotFoundError,
        RateLimitedError,
        ServerError,
        TransportError,
    )
    from .paging import Paginator, V1EnvelopePaginator, V2HeaderPaginator, page_offsets
    from .retry import RetryPolicy

#: Where each public name lives.
_HOMES = {
    "JumpCloudClient": "client",
    "ClientStats": "client",
    "MAX_PAGE_SIZE": "client",
    "RetryPolicy": "retry",
    "Paginator": "paging",
    "V1EnvelopePaginator": "paging",
    "V2HeaderPaginator": "paging",
    "page_offsets": "paging",
    "JumpCloudError": "errors",
    "AuthError": "errors",
    "NotFoundError": "errors",
    "ConflictError": "errors",
    "BadRequestError": "errors",
    "RateLimitedError": "errors",
    "ServerError": "errors",
    "TransportError": "errors",
    "BadResponseError": "errors",
}

__all__ = [
    "JumpCloudClient",
    "ClientStats",
    "RetryPolicy",
    "MAX_PAGE_SIZE",
    "Paginator",
    "V1EnvelopePaginator",
    "V2HeaderPaginator",
    "page_offsets",
    "errors",
    "JumpCloudError",
    "AuthError",
    "NotFoundError",
    "ConflictError",
    "BadRequestError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "BadResponseError",
]


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
