"""How names, emails and usernames are compared: one rule for the store's ``*_key`` columns and every lookup."""

from __future__ import annotations


def lookup_key(text: str) -> str:
    """Case-folded (Python's ``casefold``: SQLite's ``lower()`` folds ASCII only), surrounding space ignored."""
    return text.strip().casefold()
