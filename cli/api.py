"""``jumpsync api``: serve the HTTP API (docs/api.md) for ticketing systems, portals and bots.

Imports only what its options need at start-up: FastAPI and uvicorn load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cli import output
from cli.common import ConfigOption, use_config
from httpapi.server import DEFAULT_HOST, DEFAULT_PORT  # (httpapi.server imports no web framework at the top)

err = output.stderr()


def api(config: Optional[Path] = ConfigOption,
        host: str = typer.Option(DEFAULT_HOST, help="Listen address. Beyond loopback: TLS, or --behind-tls-proxy."),
        port: int = typer.Option(DEFAULT_PORT, min=1, max=65535, help="Listen port."),
        tls_certfile: Optional[Path] = typer.Option(None, help="Serve HTTPS with this certificate (PEM)."),
        tls_keyfile: Optional[Path] = typer.Option(None, help="The certificate's private key (PEM)."),
        behind_tls_proxy: bool = typer.Option(
            False, "--behind-tls-proxy",
            help="A TLS proxy, ingress or mesh fronts this address: plain HTTP beyond loopback is allowed."),
        loglevel: str = typer.Option("INFO")) -> None:
    """Serve the HTTP API: provisioning requests and read-only views, for API tokens (jumpsync tokens)."""
    use_config(config)
    from httpapi.server import Listen, PlainHttpRefused, serve

    listen = Listen(host=host, port=port, certfile=tls_certfile, keyfile=tls_keyfile,
                    behind_tls_proxy=behind_tls_proxy)
    try:
        listen.check()
    except PlainHttpRefused as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    from worker import runtime

    runtime.engine()  # a database that is not migrated stops the process now (SchemaOutOfDate), not per request
    err.print(f"jumpsync API on {escape(listen.url)}", highlight=False)
    serve(listen, log_level=loglevel)
