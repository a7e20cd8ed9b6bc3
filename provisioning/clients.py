"""One event loop and one API client per connector for each thread of a provisioning worker, for their life.

A request used to pay for a new event loop (``asyncio.run``), a new ``JumpCloudClient`` and a new TCP (or TLS)
connection, which cost more than applying it. Here each thread that applies requests keeps:

* one event loop, created on first use, on which every request of the thread runs. An httpx connection pool
  (and the client's semaphore) belongs to the loop it was first used on, so the clients live exactly as long as
  this loop: when the loop is thrown away, so are they;
* one client per connector, kept while the connector's settings and its API key stay the same. The key is read
  for every request (a secret file or environment variable is cheap to read), so a rotated key is used from the
  next request on. The cache remembers the key only as an HMAC under a random per-process salt, which says
  whether the key changed and nothing else; the key itself lives in the client's auth, as in any client.

Per thread, not one loop per process: a request's database work (name look-ups, the write-through) is blocking
and runs where its coroutine runs. On a loop shared by many requests it would stall the others, and a request
waiting for SQLite's write lock would stall the very request holding it (its commit waits for the loop): a loop
serves one request at a time. A worker on Celery's thread pool applies as many requests at once as it has
threads, each on its own loop; a prefork pool process has one thread, so one loop.

A run interrupted from outside (a soft time limit, a signal raising inside the loop) leaves work half done on
the loop: the loop and its clients are then discarded, and the thread's next request starts afresh. Work a
request leaves behind on the loop (tasks it started and did not wait for) is cancelled when it ends, as
``asyncio.run`` would. ``close()`` ends it all: a Celery worker calls it when a pool process (or, on threads,
the worker) shuts down; other processes (tests, the CLI) at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from config.settings import ConnectorConfig
from connector.client_factory import make_client
from jumpcloud.client import JumpCloudClient

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Builds a connector's client, reading its key: ``(connector, broker_url) -> client``, as
#: ``connector.client_factory.make_client`` (the broker URL is where the connector's shared budget lives, if it has one).
ClientFactory = Callable[[ConnectorConfig, "str | None"], JumpCloudClient]


@dataclass
class _Entry:
    config: tuple[ConnectorConfig, str | None]  # what it was built from: a changed config builds a new one
    key_digest: bytes        # HMAC of the API key it carries: never the key
    client: JumpCloudClient


@dataclass
class _ThreadState:
    """One thread's loop and clients."""

    pid: int
    loop: asyncio.AbstractEventLoop | None = None
    entries: dict[str, _Entry] = field(default_factory=dict)


class ProcessClients:
    """The loops and the clients of one process, a loop (and its clients) per thread."""

    def __init__(self, factory: ClientFactory | None = None) -> None:
        self._factory = factory or make_client
        self._salt = secrets.token_bytes(32)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._states: list[_ThreadState] = []  # every thread's, for close()
        self._inherited: list[_ThreadState] = []  # a forked child's copies of its parent's: see _state

    # --- the loop -------------------------------------------------------------------------------------------
    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            # None yet in this thread, or built by the parent before a fork: its sockets and selector are the
            # parent's, so leave them be, referenced for good. Collected, their finalizers would close the
            # sockets and take them out of the selector the two processes share: the parent would then wait
            # forever on its pooled connections.
            state = self._local.state = _ThreadState(os.getpid())
            with self._lock:
                self._inherited += [s for s in self._states if s.pid != state.pid]
                self._states = [s for s in self._states if s.pid == state.pid] + [state]
        return state

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The calling thread's loop, if it has one."""
        return self._state().loop

    @property
    def _entries(self) -> dict[str, _Entry]:
        """The calling thread's clients."""
        return self._state().entries

    def _current_loop(self, state: _ThreadState) -> asyncio.AbstractEventLoop:
        if state.loop is None or state.loop.is_closed():
            state.loop, state.entries = asyncio.new_event_loop(), {}
        return state.loop

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` to completion on the calling thread's loop."""
        state = self._state()
        loop = self._current_loop(state)
        task = loop.create_task(make())
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():  # interrupted from outside, not failed: nothing on the loop is to be trusted
                _discard(state)
            raise
        finally:
            if not loop.is_closed():
                _cancel_leftovers(loop)

    # --- the clients ----------------------------------------------------------------------------------------
    def _digest(self, key: str) -> bytes:
        return hmac.new(self._salt, key.encode(), hashlib.sha256).digest()

    async def client(self, connector: ConnectorConfig, broker_url: str | None = None) -> JumpCloudClient:
        """The connector's client on the running loop (which must be the calling thread's): the cached one while
        its config and key are unchanged, else a new one (the old one is closed)."""
        entries = self._state().entries
        digest = self._digest(connector.api_key())
        config = (connector, broker_url)
        entry = entries.get(connector.name)
        if entry is not None and entry.config == config and entry.key_digest == digest:
            return entry.client
        if entry is not None:
            del entries[connector.name]
            await _close_quietly(entry.client)
        client = self._factory(connector, broker_url)
        entries[connector.name] = _Entry(config, digest, client)
        return client

    # --- the end --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the clients and the loops of this process's threads (a no-op in a process that never ran a
        request). A loop still running a request (another thread's) is left to its thread."""
        with self._lock:
            states = [state for state in self._states if state.pid == os.getpid()]
        for state in states:
            _discard(state)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not leftovers:
        return
    for leftover in leftovers:
        leftover.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def _discard(state: _ThreadState) -> None:
    """Drop a thread's loop and its clients, closing what can be closed."""
    loop, entries = state.loop, list(state.entries.values())
    state.loop, state.entries = None, {}
    if loop is None or loop.is_closed() or loop.is_running():
        return
    try:
        _cancel_leftovers(loop)
        for entry in entries:
            loop.run_until_complete(_close_quietly(entry.client))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException:  # closing is best effort; the loop goes in any case
        log.warning("could not close the provisioning clients cleanly", exc_info=True)
    finally:
        loop.close()


async def _close_quietly(client: JumpCloudClient) -> None:
    try:
        await client.aclose()
    except Exception:  # a connection that is already gone
        log.warning("closing a JumpCloud client failed", exc_info=True)


_process: ProcessClients | None = None
_process_lock = threading.Lock()


def for_process() -> ProcessClients:
    """This process's loops and clients (clients built by ``connector.client_factory.make_client``), created on
    first use."""
    global _process
    with _process_lock:
        if _process is None:
            _process = ProcessClients()
        return _process


def close() -> None:
    """Close the process's clients and loops, if it has any."""
    if _process is not None:
        _process.close()


atexit.register(close)
