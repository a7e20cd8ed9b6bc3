"""``jumpsync api``: the API's process, uvicorn serving ``httpapi.app``.

Bearer tokens must not cross a network in clear text. So the API listens on loopback unless it has TLS of its
own (``--tls-certfile`` and ``--tls-keyfile``) or the operator states that a TLS proxy, ingress or service mesh
is in front of it (``--behind-tls-proxy``: containers listen on 0.0.0.0 for their Service). Any other
non-loopback address is refused at start, not warned about: a warning in a log nobody reads would leave the
tokens readable on the wire.

The process needs the database and the broker, never a JumpCloud key: it records and enqueues; the workers apply.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


class PlainHttpRefused(ValueError):
    """A non-loopback address without TLS, and no proxy in front said to provide it."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Listen:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    certfile: Path | None = None
    keyfile: Path | None = None
    behind_tls_proxy: bool = False

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def check(self) -> None:
        """Refuse what would send tokens in clear text over a network (PlainHttpRefused says what to do)."""
        if (self.certfile is None) != (self.keyfile is None):
            raise PlainHttpRefused("give both --tls-certfile and --tls-keyfile, or neither")
        if is_loopback(self.host) or self.tls or self.behind_tls_proxy:
            return
        raise PlainHttpRefused(
            f"refusing to serve plain HTTP on {self.host}: bearer tokens would cross the network in clear text. "
            "Give --tls-certfile and --tls-keyfile, listen on 127.0.0.1 behind a TLS reverse proxy, or, when a "
            "TLS proxy, ingress or service mesh reaches this address, say so with --behind-tls-proxy")


def serve(listen: Listen, *, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT (uvicorn finishes the requests in flight)."""
    import uvicorn

    from httpapi.app import create_app

    listen.check()
    # http and loop stay "auto": httptools and uvloop (dependencies) where they install, h11 and asyncio elsewhere.
    uvicorn.run(create_app(), host=listen.host, port=listen.port, log_level=log_level.lower(),
                ssl_certfile=str(listen.certfile) if listen.certfile else None,
                ssl_keyfile=str(listen.keyfile) if listen.keyfile else None,
                # Behind a proxy, the client's address comes from X-Forwarded-For (only a proxy's).
                proxy_headers=listen.behind_tls_proxy, server_header=False)
