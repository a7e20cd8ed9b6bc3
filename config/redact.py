"""URLs as they may be shown: the password of a database or broker URL replaced by ``***``.

The URLs carry passwords (``redis://:PASSWORD@host:6379/0``, ``postgresql://user:PASSWORD@host/db``), and what
prints or logs them (``jumpsync up``, the log lines of every process, ``jumpsync health``, an error a library
raises with the URL in it) goes to terminals, files and log collectors. One rule, applied where text leaves a
process: ``redact`` on anything that may hold a URL.

The password ends at the last ``@`` of the URL's authority (the part before the first ``/``), as URL parsers
(``urllib``, redis-py, kombu) read it: a password written with a raw ``@`` in it is hidden whole.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^/?#\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL in it replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``; other URLs unchanged."""
    return redact(url)
