"""How names, emails and usernames are compared: one rule for the store's ``*_key`` columns and every lookup
(``config.names.name_key``: case-folded, surrounding space ignored; Python's ``casefold``, as SQLite's ``lower()``
folds ASCII only)."""

from __future__ import annotations

from config.names import name_key as lookup_key

__all__ = ["lookup_key"]
