"""Showing data that came from JumpCloud (or from whoever filed a request) in a terminal, safely.

Names and errors are data: a name like ``[red]x`` must not be read as Rich markup, and control characters
(an ANSI escape in a display name) must not reach the terminal. JSON output needs none of this: the JSON
encoder escapes control characters.
"""

from __future__ import annotations

import re

from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def cell(value: object, limit: int | None = None) -> Text:
    """Literal text for a table cell: no markup, control characters shown as \\xNN, optionally shortened."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return Text(text)
