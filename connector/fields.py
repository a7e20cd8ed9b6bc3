"""Helpers that read untidy JumpCloud fields: "" and null are both "unset", booleans may be missing."""

from __future__ import annotations

from typing import Any


def clean(value: Any) -> Any:
    """The value with NUL characters removed from every string in it: PostgreSQL stores no NUL in text or
    JSON, and one hostile record must not fail a whole sync. Everything else is kept as data."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def text(record: dict[str, Any], key: str) -> str | None:
    """A string field, with "", whitespace and null all read as None; non-strings are turned into text."""
    value = record.get(key)
    if value is None or isinstance(value, (list, dict)):  # a list or object where text belongs is not text
        return None
    if not isinstance(value, str):
        value = str(value)
    value = clean(value).strip()
    return value or None


def flag(record: dict[str, Any], key: str) -> bool | None:
    """A boolean field; null or missing is None (unknown), not False."""
    value = record.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def object_field(record: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field; null, missing or anything but an object reads as an empty one."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def record_id(record: dict[str, Any]) -> str:
    """JumpCloud's id: v1 records carry ``_id`` (and usually ``id``), v2 records ``id``."""
    value = record.get("_id") or record.get("id")
    if not value or not isinstance(value, str) or not clean(value).strip():
        raise ValueError(f"record without an id: keys {sorted(map(str, record))[:10]}")
    if len(value) > 128:
        raise ValueError(f"record id of {len(value)} characters: not a JumpCloud id")
    return clean(value).strip()


def full_name(first: str | None, last: str | None) -> str | None:
    joined = " ".join(p for p in (first, last) if p)
    return joined or None


def compact(profile: dict[str, Any]) -> dict[str, Any]:
    """Drop unset values so that a profile stores only what JumpCloud knows."""
    return {k: v for k, v in profile.items() if v is not None and v != [] and v != {}}
