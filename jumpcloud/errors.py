"""Errors raised by the JumpCloud client.

Callers branch on the *kind* of failure, not on httpx internals: a connector
treats ``ConflictError`` on "add member" as success, the pipeline fails a run
clearly on ``AuthError``, and so on. Every error carries the HTTP method, the
request path (never the full URL with host, never headers) and the message
JumpCloud put in its error body.

Why the care about what an error holds: errors end up in logs, in Celery
result backends (pickled or JSON) and in tracebacks printed by CLIs. The API
key travels in a request header, so an error must never hold a reference to
an ``httpx.Request`` (or anything else with headers), and its ``args`` are only
plain strings and ints so that pickling it copies nothing else.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "JumpCloudError",
    "AuthError",
    "NotFoundError",
    "ConflictError",
    "BadRequestError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "BadResponseError",
    "error_for_status",
    "reason_phrase",
]


def reason_phrase(status: int | None) -> str:
    """The standard reason phrase for ``status`` ("" when unknown or None)."""
    if status is None:
        return ""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class JumpCloudError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status of the last response (None when no response
    arrived), ``method`` and ``path`` name the request, ``message`` is the text
    from JumpCloud's error body (or a description of what went wrong locally).
    ``attempts`` is how many HTTP attempts were made before giving up.
    """

    def __init__(
        self,
        status: int | None,
        method: str,
        path: str,
        message: str,
        *,
        attempts: int = 1,
    ) -> None:
        # args hold exactly the four plain values so that pickling (Celery result
        # backends) round-trips through __init__ and copies nothing else.
        super().__init__(status, method, path, message)
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        self.attempts = attempts
        #: A write sent again after an earlier send got no answer (it may have reached JumpCloud): this error may
        #: be the answer to the state that earlier send made (409 "already a member" on an add the lost answer
        #: applied). Actions read it to record the outcome truthfully.
        self.after_lost_answer = False

    def _detail(self) -> str:
        """The message without a leading copy of the reason phrase.

        JumpCloud often answers e.g. 401 {"message": "Unauthorized: api key user
        not found"}; printing "401 Unauthorized: Unauthorized: ..." helps nobody.
        """
        message = (self.message or "").strip()
        phrase = reason_phrase(self.status)
        if phrase:
            if message.lower() == phrase.lower():
                return ""
            prefix = phrase.lower() + ":"
            if message.lower().startswith(prefix):
                return message[len(prefix):].strip()
        return message

    def _head(self) -> str:
        if self.status is None:
            return f"{self.method} {self.path}"
        phrase = reason_phrase(self.status)
        status = f"{self.status} {phrase}" if phrase else str(self.status)
        return f"{self.method} {self.path}: {status}"

    def __str__(self) -> str:
        text = self._head()
        detail = self._detail()
        if detail:
            text = f"{text}: {detail}"
        if self.attempts > 1:
            text = f"{text} (gave up after {self.attempts} attempts)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, method={self.method!r}, "
            f"path={self.path!r}, message={self.message!r})"
        )

    def __reduce__(self):
        # Keep ``attempts`` through pickling without putting it in args.
        return (type(self), self.args, {"attempts": self.attempts})


class AuthError(JumpCloudError):
    """401 or 403: a bad, revoked or under-privileged API key, or a wrong
    x-org-id. Never retried; the run should fail clearly."""


class NotFoundError(JumpCloudError):
    """404: the object (or org) does not exist. Removing a non-member also
    answers 404, which callers may treat as "already done"."""


class ConflictError(JumpCloudError):
    """409: a duplicate (e.g. adding an existing group member, or a user whose
    email or username is taken)."""


class BadRequestError(JumpCloudError):
    """400 and any other 4xx that is not auth, not found, conflict or 429.
    Never retried: sending the same request again cannot help."""


class RateLimitedError(JumpCloudError):
    """429, still answered after every retry allowed by the RetryPolicy."""


class ServerError(JumpCloudError):
    """5xx, still answered after every retry allowed by the RetryPolicy."""


class TransportError(JumpCloudError):
    """No usable HTTP response: connection refused, DNS, TLS, timeouts...
    ``status`` is None. Raised after retries for transient failures."""


class BadResponseError(JumpCloudError):
    """A response we cannot use: invalid JSON, the wrong envelope, a missing
    or malformed total count, or an unexpected status such as a redirect
    (redirects are never followed: they could carry the key to another host)."""

    def _head(self) -> str:
        if self.status is None:
            return f"{self.method} {self.path}: bad response"
        return f"{self.method} {self.path}: bad response (HTTP {self.status})"

    def _detail(self) -> str:
        return (self.message or "").strip()


def error_for_status(
    status: int,
    method: str,
    path: str,
    message: str,
    *,
    attempts: int = 1,
) -> JumpCloudError:
    """Map a non-2xx HTTP status to the matching error class."""
    cls: type[JumpCloudError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif status == 429:
        cls = RateLimitedError
    elif 500 <= status <= 599:
        cls = ServerError
    elif 400 <= status <= 499:
        cls = BadRequestError
    else:
        cls = BadResponseError
    return cls(status, method, path, message, attempts=attempts)
