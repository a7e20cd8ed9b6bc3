"""How counts and states read in a sentence, for every message: ``1 request``, ``3 requests``; a request
``has succeeded``, ``was rejected``, ``awaits approval`` (never ``is succeeded``)."""

from __future__ import annotations

#: A state as the end of "request 5f… ___" when "is <state>" would not be English. Others read "is <state>".
_PHRASES = {"succeeded": "has succeeded", "failed": "has failed", "rejected": "was rejected",
            "denied": "was denied", "expired": "has expired", "awaiting_approval": "awaits approval",
            "skipped": "was skipped", "partial": "ended partial", "held": "is held"}


def noun(count: int, singular: str, nouns: str | None = None) -> str:
    """The noun for ``count`` things: ``request`` for 1, ``requests`` otherwise (``nouns`` when it is not
    ``singular + "s"``)."""
    return singular if count == 1 else nouns or singular + "s"


def plural(count: int, singular: str, nouns: str | None = None) -> str:
    """``1 request``, ``0 requests``, ``1,204 requests``."""
    return f"{count:,} {noun(count, singular, nouns)}"


def state(status: str) -> str:
    """A status as a predicate: ``is pending``, ``has succeeded``, ``was rejected``, ``awaits approval``."""
    return _PHRASES.get(str(status), f"is {status}")
