"""Where a request may go: the base URL a client is built with, and the request paths relative to it.

The API key travels in a header of every request, so the base URL must be https (plain http only to this
machine: the simulator, tests) and a request path can never name another host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["is_loopback_host", "check_base_url", "resolve_path", "path_label"]


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: where plain http may go (the simulator, tests)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> httpx.URL:
    """Only https, except plain http to this machine (the simulator, tests):
    the API key must never cross a network in clear text."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid base_url {base_url!r}: {exc}") from None
    if url.userinfo:
        raise ValueError("base_url must not contain credentials")
    if not url.host:
        raise ValueError(f"base_url {base_url!r} has no host")
    if url.query or url.fragment:
        raise ValueError(f"base_url {base_url!r} must not have a query or fragment")
    if url.scheme == "https":
        return url
    if url.scheme == "http":
        if is_loopback_host(url.host):
            return url
        raise ValueError(
            f"refusing plain http base_url {base_url!r}: the API key would travel in clear text; "
            "use https (http is only allowed to loopback hosts)"
        )
    raise ValueError(f"base_url {base_url!r} must use https")


def path_label(path: str) -> str:
    """The path without its query string, for errors and metrics labels."""
    return path.split("?", 1)[0]


def resolve_path(path: str, path_params: Mapping[str, Any] | None) -> tuple[str, str]:
    """(concrete path, label for metrics) from a path or a template such as ``/api/v2/usergroups/{id}``;
    ``path_params`` values are URL-quoted, and the label is the template, which keeps metrics labels few."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        # An absolute URL here would send the key to another host.
        raise ValueError(f"path must be relative to base_url and start with '/': {path!r}")
    if path_params:
        concrete = path.format_map({k: quote(str(v), safe="") for k, v in path_params.items()})
        return concrete, path_label(path)
    if "{" in path or "}" in path:
        raise ValueError(f"path {path!r} has placeholders but no path_params")
    return path, path_label(path)
