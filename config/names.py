"""How a name a person typed finds the thing it names: one rule for connectors (every command, the HTTP API and
the Python interface), MSP tables, actions and the other words a command takes, and one ranking of "did you
mean" for them and for resources (``models.resolver``).

- Connector names are lowercase (``config.values.check_name``), so a name is matched case-insensitively:
  ``DEMO`` is ``demo``, wherever it is typed.
- Suggestions rank what begins as the typed word does, then what contains it, then what is within a small edit
  distance (``difflib``, as git does): ``dem`` offers ``demo``, ``google`` offers every "Google Workspace …".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

#: difflib's similarity (0..1) below which a word is not offered.
CUTOFF = 0.6
#: A typed word shorter than this finds nothing by prefix or substring (``e`` is in almost every name).
MIN_PART = 3


def name_key(text: str) -> str:
    """How names compare: case-folded, surrounding space ignored."""
    return text.strip().casefold()


def match_name(typed: str, known: Iterable[str]) -> str | None:
    """The known name that ``typed`` names: itself, else the one equal to it case-insensitively; None if none
    (or, case-insensitively, several)."""
    known = list(known)
    if typed in known:
        return typed
    folded = [name for name in known if name_key(name) == name_key(typed)]
    return folded[0] if len(folded) == 1 else None


def rank(typed: str, keys: Sequence[str]) -> float | None:
    """How close ``typed`` (a key) is to a thing known by ``keys``: 3 and more when one begins with it, 2 and more
    when one contains it, difflib's ratio (below 1) otherwise; None below ``CUTOFF``. Ties within a tier go to the
    closer in length (``google`` prefers "Google Drive" to "Google Workspace (SAML)")."""
    best: float | None = None
    matcher = difflib.SequenceMatcher(None, b=typed)  # seq2 is the one difflib caches facts about
    for key in keys:
        if not key:
            continue
        if len(typed) >= MIN_PART and typed in key:
            score = (3.0 if key.startswith(typed) else 2.0) + len(typed) / len(key)
        else:
            matcher.set_seq1(key)
            ok = matcher.real_quick_ratio() >= CUTOFF and matcher.quick_ratio() >= CUTOFF
            score = matcher.ratio() if ok else 0.0
            if score < CUTOFF:
                continue
        best = score if best is None else max(best, score)
    return best


def closest_words(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """Names of things that are not resources (connectors, actions, statuses) close to ``word``, best first."""
    typed = name_key(word)
    scored = [(score, choice) for choice in dict.fromkeys(choices)
              if (score := rank(typed, [name_key(choice)])) is not None]
    return [choice for _, choice in sorted(scored, key=lambda s: (-s[0], s[1]))[:limit]]


def suggest(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'acme'?`` (or ``''``) for a one-line message."""
    close = closest_words(word, choices)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
