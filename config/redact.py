"""URLs as they may be shown: the password of a database or broker URL replaced by ``***``.

The URLs carry passwords (``redis://:PASSWORD@host:6379/0``, ``postgresql://user:PASSWORD@host/db``), and what
prints them (``jumpsync up``, the note a command run beside it writes) goes to terminals and logs.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@")


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``; other URLs unchanged."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}***@", url)
