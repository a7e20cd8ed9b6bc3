"""JumpCloud API client for jumpsync.

The package knows JumpCloud's HTTP conventions (auth headers, the v1 envelope
and v2 bare-array listings, retries) and nothing about our database; the
connectors name endpoints and map records. See docs/architecture.md for the
contract other packages code against.
"""

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
