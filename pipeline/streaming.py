"""Keeping a fetch part's requests in flight while the database takes its rows.

A part is one event loop. Two things would stall it: database writes on the loop (no new request is sent while
SQLite or PostgreSQL takes a batch), and fetching the grants of a page of resources page by page (the last slow
listings of a page would hold back the next page). ``WriteBehind`` moves the writes to a thread of their own,
in order; ``FetchWindow`` keeps the per-resource grant listings of *all* pages in one bounded window. Both bound
what they hold, so memory stays flat however large the tenant.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WriteAbandoned(RuntimeError):
    """A write not run because one submitted before it failed."""


class WriteBehind:
    """Runs database writes one after another on a thread of its own while the event loop goes on fetching.

    The writes run in the order they were submitted, so a part's writer objects are only ever used by that
    thread. At most ``max_pending`` writes wait at a time: past that, ``submit`` waits for the oldest, so a slow
    database slows the fetching rather than filling memory. A failed write fails the next ``submit`` or
    ``drain``, and no write after it runs (the thread checks before each, so a busy event loop that has not
    seen the failure yet cannot let one through); on leaving the block with an error, writes not yet started
    are dropped and the one running is waited for, so nothing touches the database after the part has ended.
    """

    #: The GIL switch interval while writes run behind the loop. At Python's default (5 ms) the writer thread,
    #: busy building rows, keeps the GIL that long each time the loop gives it up for a socket call, and every
    #: request the loop sends waits for it. A shorter interval hands the GIL back to the loop sooner.
    switch_interval = 0.001

    def __init__(self, max_pending: int = 4) -> None:
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jumpsync-writer")
        self._pending: deque[asyncio.Future] = deque()
        self._saved_interval: float | None = None
        self._failed = False  # set and read by the writer thread only

    def _run(self, write: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._failed:
            raise WriteAbandoned("an earlier write failed")
        try:
            return write(*args)
        except BaseException:
            self._failed = True
            raise

    async def submit(self, write: Callable[..., Any], *args: Any) -> None:
        self._pending.append(asyncio.wrap_future(self._executor.submit(self._run, write, args)))
        while self._pending and (len(self._pending) > self.max_pending or self._pending[0].done()):
            await self._pending.popleft()

    async def drain(self) -> None:
        """Wait for every write submitted so far; raises the first failure."""
        while self._pending:
            await self._pending.popleft()

    async def __aenter__(self) -> WriteBehind:
        self._saved_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._saved_interval, self.switch_interval))
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                await self.drain()
        finally:
            if self._saved_interval is not None:
                sys.setswitchinterval(self._saved_interval)
            pending, self._pending = list(self._pending), deque()
            for future in pending:
                future.cancel()
            # The write that is running (if any) finishes on its thread; wait for it without blocking the loop.
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            for future in pending:
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: the part already fails with the first error


class FetchWindow(Generic[T, R]):
    """Runs ``fetch(item)`` for items as they are added, at most ``size`` at a time.

    ``add`` returns the results that are ready (waiting only while the window is full), so that the caller can
    hand them on as they come, and ``drain`` the rest. The first failure propagates and the other fetches are
    cancelled when the block is left.
    """

    def __init__(self, fetch: Callable[[T], Awaitable[R]], size: int) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self._fetch = fetch
        self.size = size
        self._running: set[asyncio.Future] = set()

    async def add(self, item: T) -> list[R]:
        self._running.add(asyncio.ensure_future(self._fetch(item)))
        if len(self._running) >= self.size:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        return self._take_done()

    async def drain(self) -> list[R]:
        if self._running:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_EXCEPTION)
        return self._take_done()

    async def draining(self) -> AsyncIterator[list[R]]:
        """The rest of the results as they come, in the batches that finish together (``drain`` a bit at a
        time: the caller can hand some on, or save a checkpoint, while the slowest still run)."""
        while self._running:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            yield self._take_done()

    def _take_done(self) -> list[R]:
        done = [task for task in self._running if task.done()]
        self._running.difference_update(done)
        errors = [error for error in (task.exception() for task in done) if error is not None]
        if errors:
            raise errors[0]
        return [task.result() for task in done]

    async def __aenter__(self) -> FetchWindow[T, R]:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        running, self._running = self._running, set()
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
