"""provisioning.clients: one event loop and one client per connector for a worker process, rebuilt when the
connector's config or key changes, thrown away when a run is interrupted from outside; a loop per thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import pickle
import threading

import httpx
import pytest

from config.settings import ConnectorConfig
from jumpcloud import JumpCloudClient
from provisioning.clients import ProcessClients
from tests.support.json_server import json_server

KEY_ENV = "JUMPSYNC_UNIT_PROV_KEY"
OLD_KEY, NEW_KEY = "old-key-0123456789abcdef", "new-key-fedcba9876543210"


class Factory:
    """Builds clients on a MockTransport that records the key each request carried."""

    def __init__(self) -> None:
        self.built: list[JumpCloudClient] = []
        self.keys_seen: list[str] = []

    def _handler(self, request: httpx.Request) -> httpx.Response:
        self.keys_seen.append(request.headers["x-api-key"])
        return httpx.Response(200, json={"ok": True})

    def __call__(self, connector: ConnectorConfig, broker_url: str | None) -> JumpCloudClient:
        client = JumpCloudClient(base_url=connector.base_url, api_key=connector.api_key(), org_id=connector.org_id,
                                 transport=httpx.MockTransport(self._handler))
        self.built.append(client)
        return client


@pytest.fixture
def factory(monkeypatch):
    monkeypatch.setenv(KEY_ENV, OLD_KEY)
    return Factory()


@pytest.fixture
def clients(factory):
    pool = ProcessClients(factory)
    yield pool
    pool.close()


def acme(**overrides) -> ConnectorConfig:
    return ConnectorConfig(**{"name": "acme", "base_url": "https://console.jumpcloud.test",
                              "api_key_env": KEY_ENV, **overrides})


def call(clients: ProcessClients, connector: ConnectorConfig) -> JumpCloudClient:
    """One request through the connector's client, as a provisioning request makes it; returns the client."""
    async def one() -> JumpCloudClient:
        client = await clients.client(connector)
        await client.get_json("/api/systemusers")
        return client
    return clients.run(one)


def test_one_client_and_one_loop_serve_every_request(clients, factory):
    loops = []

    async def loop_of_this_run():
        loops.append(asyncio.get_running_loop())

    first = call(clients, acme())
    clients.run(loop_of_this_run)
    second = call(clients, acme())
    clients.run(loop_of_this_run)
    assert first is second and factory.built == [first]
    assert loops[0] is loops[1] and not loops[0].is_closed()
    assert factory.keys_seen == [OLD_KEY, OLD_KEY]


def test_a_rotated_key_is_used_from_the_next_request_on(clients, factory, monkeypatch):
    old = call(clients, acme())
    monkeypatch.setenv(KEY_ENV, NEW_KEY)  # the secret changed: no restart, no config change
    new = call(clients, acme())
    assert new is not old and old._http.is_closed
    assert call(clients, acme()) is new
    assert factory.keys_seen == [OLD_KEY, NEW_KEY, NEW_KEY]


def test_a_changed_connector_config_builds_a_new_client(clients, factory):
    old = call(clients, acme())
    new = call(clients, acme(org_id="5f0c2a9e8b7d4c3a2b1a0f9e"))
    assert new is not old and old._http.is_closed and new.org_id == "5f0c2a9e8b7d4c3a2b1a0f9e"
    other = call(clients, acme(name="beta"))  # another connector: a client of its own, beside the first
    assert other is not new and not new._http.is_closed


def test_the_cache_never_holds_the_key_itself(clients, factory):
    call(clients, acme())
    (entry,) = clients._entries.values()
    assert OLD_KEY not in repr(entry.config) and OLD_KEY.encode() not in pickle.dumps(entry.config)
    assert OLD_KEY.encode() not in entry.key_digest and len(entry.key_digest) == 32
    assert ProcessClients(factory)._digest(OLD_KEY) != clients._digest(OLD_KEY)  # salted per process


def test_an_interrupted_run_discards_the_loop_and_its_clients(clients, factory):
    client = call(clients, acme())
    first_loop = clients._loop

    async def interrupted():
        # What a signal raising in the middle of the loop looks like (a soft time limit): the run stops with
        # its task still pending.
        asyncio.get_running_loop().call_soon(_raise_keyboard_interrupt)
        await asyncio.sleep(3600)

    with pytest.raises(KeyboardInterrupt):
        clients.run(interrupted)
    assert first_loop.is_closed() and client._http.is_closed
    again = call(clients, acme())  # the next request starts afresh
    assert again is not client and clients._loop is not first_loop


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def test_a_failed_request_keeps_the_loop_and_work_left_behind_is_cancelled(clients, factory):
    client = call(clients, acme())
    left = []

    async def fails():
        left.append(asyncio.ensure_future(asyncio.sleep(3600)))
        raise ValueError("the request failed")

    with pytest.raises(ValueError):
        clients.run(fails)
    assert left[0].cancelled()
    assert call(clients, acme()) is client  # a request's own failure is no reason to drop the client


def test_close_closes_the_clients_and_the_loop(factory):
    pool = ProcessClients(factory)
    pool.close()  # never used: nothing to do
    client = call(pool, acme())
    loop = pool._loop
    pool.close()
    assert client._http.is_closed and loop.is_closed()
    pool.close()


def test_each_thread_has_its_own_loop_and_clients_and_close_ends_them_all(clients, factory):
    """A worker on Celery's thread pool: every thread applies its requests on a loop of its own (a request's
    blocking database work stalls no other request), and the worker's shutdown closes every thread's."""
    threads = 4
    everyone_here = threading.Barrier(threads, timeout=30)

    def one_thread(_):
        everyone_here.wait()  # all the threads at once, none reusing another's
        client = call(clients, acme())
        return client, clients._loop

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one_thread, range(threads)))
    loops = {id(loop) for _, loop in results}
    assert len(loops) == threads and len({id(client) for client, _ in results}) == threads
    assert len(factory.built) == threads and factory.keys_seen == [OLD_KEY] * threads
    clients.close()
    assert all(loop.is_closed() and client._http.is_closed for client, loop in results)


def test_a_forked_child_leaves_the_parents_clients_working(factory):
    """The child drops what it inherited without closing or collecting it: the parent's pooled connection to
    the API still answers (it waited forever when the child's garbage collection closed the shared sockets)."""
    with json_server() as base_url:
        pool = ProcessClients()  # the real client and transport
        connector = acme(base_url=base_url, timeout=2, max_attempts=1)
        try:
            first = call(pool, connector)
            child = os.fork()
            if child == 0:  # the child: what a forked worker does first, then drop every reference it can
                try:
                    pool._state()
                    del first
                    gc.collect()
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
            assert call(pool, connector) is first
        finally:
            pool.close()
