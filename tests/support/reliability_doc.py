"""docs/reliability.md has two generators: ``make reliability`` (tests/integration/test_faults.py) writes the
fault-injection table, ``make chaos`` (tests/chaos) the chaos section between two markers. Each rewrites its own
part and keeps the other's."""

from __future__ import annotations

from pathlib import Path

CHAOS_BEGIN = "<!-- chaos:begin -->"
CHAOS_END = "<!-- chaos:end -->"


def chaos_section(text: str) -> str:
    """The chaos section of a document, markers included; "" if it has none."""
    begin, end = text.find(CHAOS_BEGIN), text.find(CHAOS_END)
    if begin < 0 or end < begin:
        return ""
    return text[begin:end + len(CHAOS_END)]


def with_chaos_section(text: str, section: str) -> str:
    """``text`` with its chaos section replaced by ``section`` (markers included), or ``section`` appended."""
    old = chaos_section(text)
    if old:
        return text.replace(old, section.strip())
    return text.rstrip("\n") + "\n\n" + section.strip() + "\n"


def keep_chaos_section(path: Path, text: str) -> str:
    """``text``, the new rest of the document at ``path``, followed by the chaos section ``path`` holds now."""
    section = chaos_section(path.read_text()) if path.exists() else ""
    return text.rstrip("\n") + "\n\n" + section + "\n" if section else text
