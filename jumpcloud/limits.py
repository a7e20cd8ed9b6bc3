"""Limits shared beyond one client: the client asks a ``Limiter`` for a slot around every HTTP attempt.

The client already bounds its own requests in flight; a limiter adds a bound that several clients (every
part of every sync on every worker of a connector) share, such as ``jumpcloud.budget.RedisBudget``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Limiter(Protocol):
    def slot(self) -> AbstractAsyncContextManager[None]:
        """Wait until one more request may be sent; release when it has been answered."""

    async def aclose(self) -> None:
        """Release what the limiter holds (the client that uses it calls this when it closes)."""
