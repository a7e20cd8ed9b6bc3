"""The TLS context of every client of a process, and the rule that verification stays on.

One SSLContext per CA source and process: building one (``ssl.create_default_context``) parses the whole CA
bundle, and a client would otherwise build one each, even for a plain-http loopback base URL. A context is
safe to share between connections and clients: the transport (aiohttp) uses it as given, and httpcore (a
test's httpx transport) only sets the same ALPN protocols on it. A bundle replaced on disk (a CA rotation) is
read again.
"""

from __future__ import annotations

import os
import ssl
import threading

import certifi

__all__ = ["shared_ssl_context", "ssl_context", "Verify"]

#: What a client accepts as ``verify``: True (the default CAs), a CA bundle file or directory, or a context.
Verify = bool | str | os.PathLike[str] | ssl.SSLContext

_SSL_CONTEXTS: dict[tuple[str, str], tuple[tuple[object, ...], ssl.SSLContext]] = {}
_SSL_CONTEXTS_LOCK = threading.Lock()


def _ca_source(verify: bool | str | os.PathLike[str]) -> tuple[str, str]:
    """("file" | "dir", path) of the CAs to trust: the given bundle, or what httpx would use for ``True``
    (``SSL_CERT_FILE``, ``SSL_CERT_DIR``, else certifi's bundle)."""
    if verify is True:
        if os.environ.get("SSL_CERT_FILE"):
            return "file", os.environ["SSL_CERT_FILE"]
        if os.environ.get("SSL_CERT_DIR"):
            return "dir", os.environ["SSL_CERT_DIR"]
        return "file", certifi.where()
    if isinstance(verify, bool):
        raise TypeError("verify must be True or a CA bundle path")
    path = os.fspath(verify)
    if os.path.isdir(path):
        return "dir", path
    if os.path.isfile(path):
        return "file", path
    raise ValueError(f"CA bundle {path!r} does not exist")


def _stamp(path: str) -> tuple[object, ...]:
    """What changes when the bundle is replaced or edited, so that a new one is read (a CA rotation)."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def shared_ssl_context(verify: bool | str | os.PathLike[str] = True) -> ssl.SSLContext:
    """The process's SSLContext for a CA source (``True``: the default CAs; or a bundle file or directory),
    built on first use and again only when the bundle file or directory changes."""
    kind, path = _ca_source(verify)
    stamp = _stamp(path)
    with _SSL_CONTEXTS_LOCK:
        cached = _SSL_CONTEXTS.get((kind, path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if kind == "file":
            context = ssl.create_default_context(cafile=path)
        else:
            context = ssl.create_default_context(capath=path)
        _SSL_CONTEXTS[(kind, path)] = (stamp, context)
        return context


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """True, a CA bundle path (file or directory) or an SSLContext; never False.

    Turning verification off would hand the key to whoever sits in the middle.
    """
    if verify is False or verify is None:
        raise ValueError("TLS verification cannot be turned off; pass a CA bundle path instead")
    if isinstance(verify, ssl.SSLContext):
        if verify.verify_mode == ssl.CERT_NONE or not verify.check_hostname:
            raise ValueError("the SSLContext given as verify must verify certificates and hostnames")
        return verify
    if verify is True or isinstance(verify, (str, os.PathLike)):
        return shared_ssl_context(verify)
    raise TypeError("verify must be True, a CA bundle path or an ssl.SSLContext")
