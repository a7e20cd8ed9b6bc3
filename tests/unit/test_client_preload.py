"""``jumpcloud.client.preload``: what a worker loads before it forks its pool, so that a pool process's first
sync part does not import the client's transport (aiohttp), nor parse the CA bundle, on the clock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.constants import ROOT

FIRST_REQUEST = textwrap.dedent("""
    import asyncio, sys
    from tests.support.json_server import json_server

    import jumpcloud.client as jc
    from jumpcloud import tls

    async def first_request(base_url):
        client = jc.JumpCloudClient(base_url=base_url, api_key="k" * 40)
        await client.request("GET", "/api/systemusers")
        await client.aclose()

    with json_server() as base_url:
        if sys.argv[1] == "preload":
            jc.preload()
        before, contexts = set(sys.modules), dict(tls._SSL_CONTEXTS)
        asyncio.run(first_request(base_url))
    print(sorted(set(sys.modules) - before))
    print(tls._SSL_CONTEXTS == contexts and bool(contexts))
""")


def _first_request(mode: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", FIRST_REQUEST, mode], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=60)
    modules, context_kept = done.stdout.strip().splitlines()[-2:]
    return modules, context_kept


def test_after_preload_a_first_request_imports_nothing_and_builds_no_tls_context():
    assert _first_request("preload") == ("[]", "True")


def test_without_it_the_first_request_pays_for_both():
    modules, context_kept = _first_request("cold")
    assert "aiohttp" in modules and "jumpcloud.transport" in modules
    assert context_kept == "False"
