"""One event loop and one API client per connector for the life of a provisioning worker process.

A request used to pay for a new event loop (``asyncio.run``), a new ``JumpCloudClient`` and a new TCP (or TLS)
connection, which cost more than applying it. Here a process keeps:

* one event loop, created on first use, on which every request of the process runs. An httpx connection pool
  (and the client's semaphore) belongs to the loop it was first used on, so the clients live exactly as long as
  this loop: when the loop is thrown away, so are they;
* one client per connector, kept while the connector's settings and its API key stay the same. The key is read
  for every request (a secret file or environment variable is cheap to read), so a rotated key is used from the
  next request on. The cache remembers the key only as an HMAC under a random per-process salt, which says
  whether the key changed and nothing else; the key itself lives in the client's auth, as in any client.

A run interrupted from outside (a soft time limit, a signal raising inside the loop) leaves work half done on
the loop: the loop and its clients are then discarded, and the next request starts afresh. Work a request
leaves behind on the loop (tasks it started and did not wait for) is cancelled when it ends, as ``asyncio.run``
would. ``close()`` ends it all: a Celery worker calls it when a pool process shuts down; other processes
(tests, the CLI) at exit.

Not thread-safe: a pool process runs one task at a time, on one thread.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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


class ProcessClients:
    """The loop and the clients of one process."""

    def __init__(self, factory: ClientFactory | None = None) -> None:
        self._factory = factory or make_client
        self._salt = secrets.token_bytes(32)
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entries: dict[str, _Entry] = {}

    # --- the loop -------------------------------------------------------------------------------------------
    def _current_loop(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():
            # Built by the parent before a fork: its sockets and selector are the parent's, so leave them be.
            self._loop, self._entries, self._pid = None, {}, os.getpid()
        if self._loop is None or self._loop.is_closed():
            self._loop, self._entries = asyncio.new_event_loop(), {}
        return self._loop

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` to completion on the process's loop."""
        loop = self._current_loop()
        task = loop.create_task(make())
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():  # interrupted from outside, not failed: nothing on the loop is to be trusted
                self._discard()
            raise
        finally:
            if not loop.is_closed():
                self._cancel_leftovers(loop)

    @staticmethod
    def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
        leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not leftovers:
            return
        for leftover in leftovers:
            leftover.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    # --- the clients ----------------------------------------------------------------------------------------
    def _digest(self, key: str) -> bytes:
        return hmac.new(self._salt, key.encode(), hashlib.sha256).digest()

    async def client(self, connector: ConnectorConfig, broker_url: str | None = None) -> JumpCloudClient:
        """The connector's client on the running loop (which must be this process's): the cached one while its
        config and key are unchanged, else a new one (the old one is closed)."""
        digest = self._digest(connector.api_key())
        config = (connector, broker_url)
        entry = self._entries.get(connector.name)
        if entry is not None and entry.config == config and entry.key_digest == digest:
            return entry.client
        if entry is not None:
            del self._entries[connector.name]
            await _close_quietly(entry.client)
        client = self._factory(connector, broker_url)
        self._entries[connector.name] = _Entry(config, digest, client)
        return client

    # --- the end --------------------------------------------------------------------------------------------
    def _discard(self) -> None:
        """Drop the loop and its clients, closing what can be closed."""
        loop, entries = self._loop, list(self._entries.values())
        self._loop, self._entries = None, {}
        if loop is None or loop.is_closed() or loop.is_running():
            return
        try:
            self._cancel_leftovers(loop)
            for entry in entries:
                loop.run_until_complete(_close_quietly(entry.client))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException:  # closing is best effort; the loop goes in any case
            log.warning("could not close the provisioning clients cleanly", exc_info=True)
        finally:
            loop.close()

    def close(self) -> None:
        """Close the clients and the loop of this process (a no-op in a process that never ran a request)."""
        if self._pid == os.getpid():
            self._discard()


async def _close_quietly(client: JumpCloudClient) -> None:
    try:
        await client.aclose()
    except Exception:  # a connection that is already gone
        log.warning("closing a JumpCloud client failed", exc_info=True)


_process: ProcessClients | None = None


def for_process() -> ProcessClients:
    """This process's loop and clients (clients built by ``connector.client_factory.make_client``), created on first use."""
    global _process
    if _process is None:
        _process = ProcessClients()
    return _process


def close() -> None:
    """Close the process's clients and loop, if it has any."""
    if _process is not None:
        _process.close()


atexit.register(close)
