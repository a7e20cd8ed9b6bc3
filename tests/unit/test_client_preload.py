"""``jumpcloud.client.preload``: what a worker loads before it forks its pool, so that a pool process's first
sync part does not import the client's transport (aiohttp), nor parse the CA bundle, on the clock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.constants import ROOT

FIRST_REQUEST = textwrap.dedent("""
    import asyncio, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"results": [], "totalCount": 0}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import jumpcloud.client as jc
    from jumpcloud import tls
    if sys.argv[1] == "preload":
        jc.preload()
    before, contexts = set(sys.modules), dict(tls._SSL_CONTEXTS)

    async def first_request():
        client = jc.JumpCloudClient(base_url=f"http://127.0.0.1:{server.server_port}", api_key="k" * 40)
        await client.request("GET", "/api/systemusers")
        await client.aclose()

    asyncio.run(first_request())
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
